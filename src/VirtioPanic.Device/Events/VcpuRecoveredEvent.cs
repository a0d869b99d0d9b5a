namespace VirtioPanic.Device;

/// <summary>
/// A stalled vCPU (<see cref="VcpuStalledEvent"/>) pet again before stage two: it is tracked with a
/// new countdown and stage two will not fire for this stall. Never dropped.
/// </summary>
public sealed record VcpuRecoveredEvent : WatchdogEvent
{
    /// <summary>The vCPU's index (also in <see cref="WatchdogEvent.VcpuId"/>).</summary>
    public required int Vcpu { get; init; }

    /// <summary>The VM run time between stage one and the pet.</summary>
    public required TimeSpan SinceStall { get; init; }

    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.VcpuRecovered;
}
