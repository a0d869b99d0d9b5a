using System.Collections.Immutable;

namespace VirtioPanic.Hosting.Journal;

// An "escalation" record as start-up read it: a device's escalation in progress after its last
// step (Step of StepCount carried out), NextAction due at Due. Untrusted like every journal value:
// PolicyService.Recovery.cs checks it (PolicyEngine.Resume) before anything is done with it.
internal sealed record JournaledEscalation
{
    internal required string Run { get; init; }

    internal required long RecordId { get; init; }

    internal required string DeviceId { get; init; }

    internal required EscalationKind Kind { get; init; }

    // The whole sequence in configuration syntax; the remaining steps are parsed from it again.
    internal required string Plan { get; init; }

    internal required long TriggerSequence { get; init; }

    internal required int Step { get; init; }

    internal required int StepCount { get; init; }

    internal required string NextAction { get; init; }

    internal required DateTimeOffset Due { get; init; }

    // A vCPU-stall escalation's stalled vCPUs.
    internal ImmutableArray<uint> Vcpus { get; init; } = [];

    // The VM's run state the next step was planned for (null: unknown, only ever reported).
    internal bool? VmRunning { get; init; }

    internal required DateTimeOffset Time { get; init; }
}
