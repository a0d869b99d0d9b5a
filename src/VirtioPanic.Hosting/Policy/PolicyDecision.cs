using System.Collections.Immutable;

namespace VirtioPanic.Hosting.Policy;

// What PolicyEngine decided for one input: the new state, the action, the calls to make.
internal sealed record PolicyDecision
{
    internal required DevicePolicyState State { get; init; }

    // What is done: a configured action or one of the service's own outcomes (DecidedAction.Name: "destroy", "reset", "log", "grace", ...).
    internal required DecidedAction Action { get; init; }

    internal ImmutableArray<PlannedStep> Steps { get; init; } = [];

    internal string? Note { get; init; }

    internal bool StormTripped { get; init; }

    // The escalation step this decision carries out (the first when it starts one), if any.
    internal EscalationMark? EscalationStep { get; init; }

    // The escalation this decision stopped before its next step, if any.
    internal CancelledEscalation? Cancelled { get; init; }

    // False for an escalation step with steps after it: a failed call takes no fallback, the next step runs at once instead.
    internal bool Fallbacks { get; init; } = true;
}
