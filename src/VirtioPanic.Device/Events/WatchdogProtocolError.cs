namespace VirtioPanic.Device;

/// <summary>What the guest got wrong (see <see cref="GuestProtocolErrorEvent"/>).</summary>
public enum WatchdogProtocolError
{
    /// <summary>A ring error stopped a queue (the queue's status is in the detail); DEVICE_NEEDS_RESET was set.</summary>
    RingError,

    /// <summary>Without CONTROL, a watchdog-queue chain started with a device-readable buffer; DEVICE_NEEDS_RESET was set (Cloud Hypervisor behaviour).</summary>
    HeartbeatRejected,

    /// <summary>A committed event record broke a layout rule; it was completed with MALFORMED.</summary>
    MalformedRecord,

    /// <summary>A committed event record had a type the device does not know; it was completed with UNSUPPORTED.</summary>
    UnsupportedRecordType,

    /// <summary>A control request chain had less than 16 writable bytes (not executed) or less than 16 readable bytes (answered INVALID).</summary>
    MalformedControl,

    /// <summary>A notice-queue buffer was too short or device-readable; it was returned unused.</summary>
    MalformedNoticeBuffer,

    /// <summary>A write to <c>panic_events</c> set no supported bit, or set unsupported bits besides a supported one.</summary>
    UnknownPanicEvents,

    /// <summary>A configuration write to a read-only field or with a width the device does not accept; ignored.</summary>
    InvalidConfigWrite,

    /// <summary>A record held when the device was reset, or restored from a snapshot, no longer maps to guest memory; it was forgotten.</summary>
    LostRecordBuffer,

    /// <summary>A <c>vcpu_heartbeat</c> write (VIRTIO_WDT_F_VCPU_STALL) that was not 4 bytes wide, named a vCPU index at or above <c>vcpu_count</c>, or came without the feature offered; ignored.</summary>
    InvalidVcpuHeartbeat,
}
