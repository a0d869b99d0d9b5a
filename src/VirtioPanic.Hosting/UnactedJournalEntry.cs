using VirtioPanic.Hosting.Journal;

namespace VirtioPanic.Hosting;

/// <summary>An event the journal shows as accepted from the guest but never decided, or decided but with no recorded outcome: the process stopped before finishing the action.</summary>
public sealed record UnactedJournalEntry
{
    /// <summary>The run (service start) that journaled it.</summary>
    public required string Run { get; init; }

    /// <summary>The record's id within that run.</summary>
    public required long RecordId { get; init; }

    /// <summary>The device.</summary>
    public required string DeviceId { get; init; }

    /// <summary>The device event's sequence number.</summary>
    public required long Sequence { get; init; }

    /// <summary>The event's QMP-style name.</summary>
    public required string Name { get; init; }

    /// <summary>The policy action that was decided but not confirmed; empty when the device accepted the event but the service stopped before deciding on it.</summary>
    public required string PolicyAction { get; init; }

    /// <summary>When it was journaled.</summary>
    public required DateTimeOffset Time { get; init; }

    /// <summary>The journal line as written.</summary>
    public required string Line { get; init; }

    /// <summary>Whether a VM-control call for the decision had started when the process stopped: it may have been carried out, so it is reported and never repeated.</summary>
    public bool Attempted { get; init; }

    /// <summary>Whether the VM was running when the decision was made, as the VM control knew it (<see cref="Qmp.QmpVmControl"/> does); null when unknown.</summary>
    public bool? VmRunning { get; init; }

    /// <summary>For a decision that deferred its action (a panic grace window, a crash kernel's deadline): when the action was due; null otherwise.</summary>
    public DateTimeOffset? DeferredUntil { get; init; }

    /// <summary>
    /// Whether the service carries the decision out once the VMM is reachable again, if
    /// <c>query-status</c> then shows the VM still in the state the decision was made for: a
    /// decided action with a known VM state and no call started. Otherwise it is only reported.
    /// </summary>
    public bool Recoverable => PolicyAction.Length > 0 && !Attempted && VmRunning is not null;

    // The original record's type (event, deadline, continue, guest-reset); a recover record's is its of-type.
    internal string RecordType { get; init; } = "event";

    internal PendingDeadlineKind DeferredKind { get; init; }

    // For a step of a staged escalation: the decision record's "escalation" member (which step of
    // which escalation, what was next), as JournalReader read it; null for any other decision, or
    // when the member is malformed (then the decision is recovered as a plain one).
    internal JournaledEscalation? EscalationStep { get; init; }
}
