namespace VirtioPanic.Hosting;

/// <summary>
/// An escalation in progress on a device (<see cref="DeviceReport.Escalation"/>): which step was
/// carried out last and which one is due when, unless the guest recovers first.
/// </summary>
public sealed record PendingEscalation
{
    /// <summary>What started it.</summary>
    public required EscalationKind Kind { get; init; }

    /// <summary>The whole sequence in configuration syntax, for example <c>inject-nmi; 10s dump; 10s reset</c>.</summary>
    public required string Plan { get; init; }

    /// <summary>The sequence number of the device event that started it.</summary>
    public required long TriggerSequence { get; init; }

    /// <summary>The last step carried out, counting from 1 (the first step runs when the escalation starts).</summary>
    public required int Step { get; init; }

    /// <summary>How many steps the sequence has.</summary>
    public required int StepCount { get; init; }

    /// <summary>The next step's action in libvirt spelling (for example <c>dump</c>).</summary>
    public required string NextAction { get; init; }

    /// <summary>When the next step is due (host time).</summary>
    public required DateTimeOffset NextDue { get; init; }

    /// <summary>For a <see cref="EscalationKind.VcpuStall"/> escalation: the stalled vCPUs whose recovery it waits for (it is cancelled when all of them recovered); empty otherwise.</summary>
    public IReadOnlyList<uint> Vcpus { get; init; } = [];
}
