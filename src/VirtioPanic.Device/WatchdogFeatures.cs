namespace VirtioPanic.Device;

/// <summary>
/// Device-specific feature bits of the watchdog device (spec/virtio-watchdog.md §3). The numeric
/// value of each member is its feature-bit mask.
/// </summary>
[Flags]
public enum WatchdogFeatures : ulong
{
    /// <summary>No device-specific feature: the Cloud Hypervisor-compatible baseline heartbeat protocol only.</summary>
    None = 0,

    /// <summary>VIRTIO_WDT_F_EVENTS (bit 0): rich event records on the event queue (queue 1).</summary>
    Events = 1UL << 0,

    /// <summary>VIRTIO_WDT_F_PANIC_CONFIG (bit 1): the minimal panic path, <c>panic_events</c> in the configuration space.</summary>
    PanicConfig = 1UL << 1,

    /// <summary>VIRTIO_WDT_F_CONTROL (bit 2): control requests on the watchdog queue; guest-chosen timeout within host bounds.</summary>
    Control = 1UL << 2,

    /// <summary>VIRTIO_WDT_F_PRETIMEOUT (bit 3): pretimeout notices on the notice queue (queue 2). Requires <see cref="Control"/>.</summary>
    Pretimeout = 1UL << 3,

    /// <summary>VIRTIO_WDT_F_BOOT_REASON (bit 4): <c>boot_reason</c> tells the guest why the host last reset the VM.</summary>
    BootReason = 1UL << 4,

    /// <summary>VIRTIO_WDT_F_LOG_TAIL (bit 5): event records may carry a kernel-log tail. Requires <see cref="Events"/>.</summary>
    LogTail = 1UL << 5,

    /// <summary>
    /// VIRTIO_WDT_F_VCPU_STALL (bit 6): per-vCPU stall detection (spec §6.12): <c>vcpu_count</c>,
    /// <c>vcpu_timeout_ms</c>, <c>vcpu_stage2_ms</c> and <c>vcpu_heartbeat</c> in a 36-byte
    /// configuration, VCPU_STALL notices on the notice queue. Offered only when
    /// <see cref="WatchdogDeviceOptions.VcpuCount"/> is not 0.
    /// </summary>
    VcpuStall = 1UL << 6,

    /// <summary>Every feature this device implements. <see cref="VcpuStall"/> among them is offered only with a <see cref="WatchdogDeviceOptions.VcpuCount"/>.</summary>
    All = Events | PanicConfig | Control | Pretimeout | BootReason | LogTail | VcpuStall,
}
