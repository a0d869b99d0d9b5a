using System.Collections.Immutable;

namespace VirtioPanic.Hosting.Policy;

// What the policy remembers about one device between events. Immutable; PolicyEngine returns a new one.
internal sealed record DevicePolicyState
{
    internal static DevicePolicyState Initial { get; } = new();

    internal GuestCondition Condition { get; init; }

    // Host times of the panics still inside the storm window, oldest first.
    internal ImmutableArray<DateTimeOffset> RecentPanics { get; init; } = [];

    internal bool StormGuard { get; init; }

    internal PendingDeadline? Deadline { get; init; }

    // A staged escalation in progress, if any (independent of Deadline: a grace window and a watchdog escalation can both run).
    internal Escalation? Escalation { get; init; }
}
