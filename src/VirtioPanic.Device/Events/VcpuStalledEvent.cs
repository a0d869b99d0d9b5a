namespace VirtioPanic.Device;

/// <summary>
/// Stage one of per-vCPU stall detection (spec §6.12): vCPU <see cref="Vcpu"/> ran
/// <see cref="StalledFor"/> of its own run time without a pet. The guest was sent a VCPU_STALL
/// notice; unless that vCPU pets again within <see cref="SecondStage"/> of VM run time, a
/// <see cref="VcpuStallExpiredEvent"/> follows. Never dropped.
/// </summary>
public sealed record VcpuStalledEvent : WatchdogEvent
{
    /// <summary>The stalled vCPU's index (also in <see cref="WatchdogEvent.VcpuId"/>).</summary>
    public required int Vcpu { get; init; }

    /// <summary>That vCPU's run time since its last pet when stage one fired (at least <see cref="Timeout"/>).</summary>
    public required TimeSpan StalledFor { get; init; }

    /// <summary>The stage-one timeout (<see cref="WatchdogDeviceOptions.VcpuStallTimeout"/>).</summary>
    public required TimeSpan Timeout { get; init; }

    /// <summary>The VM run time after which stage two fires without a pet (<see cref="WatchdogDeviceOptions.VcpuStallSecondStage"/>).</summary>
    public required TimeSpan SecondStage { get; init; }

    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.VcpuStalled;
}
