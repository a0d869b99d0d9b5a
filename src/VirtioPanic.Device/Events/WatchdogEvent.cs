namespace VirtioPanic.Device;

/// <summary>
/// Something the watchdog device reports to the host. Every event names its device and carries a
/// per-device sequence number, the vCPU when known, and guest and host timestamps.
/// </summary>
/// <remarks>
/// <para>Guest panics, crash-loaded and shutdown reports, watchdog expiries and vCPU-stall events are never dropped.
/// When the host falls behind they may be <em>coalesced</em>: further events of the same kind are
/// folded into one, whose <see cref="CoalescedCount"/> says how many it stands for. Other kinds may
/// be dropped under pressure; their sequence numbers are then missing, which makes the loss
/// visible.</para>
/// </remarks>
public abstract record WatchdogEvent
{
    /// <summary>The device instance's identifier (<see cref="WatchdogDeviceOptions.DeviceId"/>).</summary>
    public required string DeviceId { get; init; }

    /// <summary>Per-device sequence number, starting at 1; gaps mean dropped events.</summary>
    public required long Sequence { get; init; }

    /// <summary>The vCPU that reported the event, when the guest said so; null otherwise.</summary>
    public uint? VcpuId { get; init; }

    /// <summary>The guest's own timestamp for the event (its clock since boot), when it supplied one.</summary>
    public TimeSpan? GuestTime { get; init; }

    /// <summary>The VM's run time (time its vCPUs were allowed to run, as the device counts it) at the event.</summary>
    public required TimeSpan VmRunTime { get; init; }

    /// <summary>The host's wall-clock time at the event (from the device's <see cref="TimeProvider"/>).</summary>
    public required DateTimeOffset HostTime { get; init; }

    /// <summary>How many further events of the same kind were folded into this one because the host fell behind; usually 0.</summary>
    public int CoalescedCount { get; init; }

    /// <summary>The kind of event (one per derived type).</summary>
    public abstract WatchdogEventKind Kind { get; }

    /// <summary>Whether this kind is never dropped (only coalesced): panics, crash-loaded, shutdown, expiry, and the three vCPU-stall events.</summary>
    public bool IsCritical => Kind is WatchdogEventKind.GuestPanicked or WatchdogEventKind.GuestCrashLoaded
        or WatchdogEventKind.GuestShutdown or WatchdogEventKind.Expired
        or WatchdogEventKind.VcpuStalled or WatchdogEventKind.VcpuRecovered or WatchdogEventKind.VcpuStallExpired;
}
