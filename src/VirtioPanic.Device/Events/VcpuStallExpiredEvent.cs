namespace VirtioPanic.Device;

/// <summary>
/// Stage two of per-vCPU stall detection (spec §6.12): vCPU <see cref="Vcpu"/> stalled and did not
/// pet within <see cref="SinceStall"/> of VM run time after the stage-one notice. The device stopped
/// tracking it; what happens to the VM is the host's stall policy. Never dropped.
/// </summary>
public sealed record VcpuStallExpiredEvent : WatchdogEvent
{
    /// <summary>The vCPU's index (also in <see cref="WatchdogEvent.VcpuId"/>).</summary>
    public required int Vcpu { get; init; }

    /// <summary>The VM run time since stage one (at least <see cref="WatchdogDeviceOptions.VcpuStallSecondStage"/>).</summary>
    public required TimeSpan SinceStall { get; init; }

    /// <summary>That vCPU's run time since its last pet when stage one fired.</summary>
    public required TimeSpan StalledFor { get; init; }

    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.VcpuStallExpired;
}
