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
}
