namespace VirtioPanic.Device;

/// <summary>A snapshot of one watchdog device's state for the host's management query.</summary>
public sealed record WatchdogDeviceStatus
{
    /// <summary>The device's identifier.</summary>
    public required string DeviceId { get; init; }

    /// <summary>False once the device has been disposed.</summary>
    public required bool IsPresent { get; init; }

    /// <summary>Whether a driver has brought the device up (DRIVER_OK) since the last reset.</summary>
    public required bool DriverBound { get; init; }

    /// <summary>The device-specific features the device offers.</summary>
    public required WatchdogFeatures OfferedFeatures { get; init; }

    /// <summary>The device-specific features the bound driver accepted (None when no driver is bound).</summary>
    public required WatchdogFeatures NegotiatedFeatures { get; init; }

    /// <summary>Whether the watchdog is armed.</summary>
    public required bool Armed { get; init; }

    /// <summary>Whether the guest set NOWAYOUT.</summary>
    public required bool Nowayout { get; init; }

    /// <summary>Whether the watchdog expired and has not been armed since.</summary>
    public required bool Expired { get; init; }

    /// <summary>Whether the VM is paused (run time is not counting).</summary>
    public required bool Paused { get; init; }

    /// <summary>True while the transport keeps the driver session across a stop of its rings (<see cref="WatchdogDevice.Suspend"/>): the watchdog's clock is stopped until the rings restart or the device is reset.</summary>
    public bool Suspended { get; init; }

    /// <summary>Whether the device set DEVICE_NEEDS_RESET (a ring error or a rejected heartbeat) and waits for a reset.</summary>
    public required bool NeedsReset { get; init; }

    /// <summary>The current timeout.</summary>
    public required TimeSpan Timeout { get; init; }

    /// <summary>The current pretimeout (zero when none).</summary>
    public required TimeSpan Pretimeout { get; init; }

    /// <summary>Run time left before expiry; null while disarmed.</summary>
    public TimeSpan? TimeLeft { get; init; }

    /// <summary>The VM run time the device has counted.</summary>
    public required TimeSpan VmRunTime { get; init; }

    /// <summary>The boot reason the guest currently reads.</summary>
    public required WatchdogBootReason BootReason { get; init; }

    /// <summary>The most recent event the device produced (whether or not the host has read it yet).</summary>
    public WatchdogEvent? LastEvent { get; init; }

    /// <summary>Protocol errors counted since the device was created.</summary>
    public required long ProtocolErrors { get; init; }

    /// <summary>Non-critical events dropped because the host fell behind.</summary>
    public required long DroppedEvents { get; init; }

    /// <summary>Critical events folded into others because the host fell behind.</summary>
    public required long CoalescedEvents { get; init; }

    /// <summary>Events waiting for the host to read them.</summary>
    public required int PendingEvents { get; init; }

    /// <summary>The vCPU slots per-vCPU stall detection has (<see cref="WatchdogDeviceOptions.VcpuCount"/>; 0 when VIRTIO_WDT_F_VCPU_STALL is not offered).</summary>
    public int VcpuCount { get; init; }

    /// <summary>vCPUs being tracked (pet at least once, not stalled, not offline), not counting <see cref="StalledVcpus"/>.</summary>
    public int TrackedVcpus { get; init; }

    /// <summary>vCPUs past stage one and not yet recovered or at stage two.</summary>
    public int StalledVcpus { get; init; }

    /// <summary>Which clock each vCPU's run time is counted on (the VM's run time when the hypervisor gave no <see cref="IVcpuRunClock"/>).</summary>
    public VcpuClockSource VcpuClock { get; init; }
}
