using System.Collections.Immutable;

namespace VirtioPanic.Hosting.Policy;

// What PolicyEngine decided for one input: the new state, the action's name, the calls to make.
internal sealed record PolicyDecision
{
    internal required DevicePolicyState State { get; init; }

    // libvirt-style name of what is done: "destroy", "reset", "log", "grace", "continue", "ignored", ...
    internal required string Action { get; init; }

    internal ImmutableArray<PlannedStep> Steps { get; init; } = [];

    internal string? Note { get; init; }

    internal bool StormTripped { get; init; }
}
