namespace VirtioPanic.Hosting.Policy;

// What a decision does, as a value: one of the configured panic or watchdog actions, or one of the
// service's own outcomes (log only, a grace window, continue, a guest reset, nothing). Name is the
// libvirt-style spelling the journal, the logs, HandledEvent.PolicyAction and the JSON carry; it is
// made once, when the decision is.
internal readonly record struct DecidedAction
{
    private DecidedAction(DecidedActionKind kind, string name)
    {
        Kind = kind;
        Name = name;
    }

    internal static DecidedAction Log { get; } = new(DecidedActionKind.Log, "log");

    internal static DecidedAction Grace { get; } = new(DecidedActionKind.Grace, "grace");

    internal static DecidedAction Continue { get; } = new(DecidedActionKind.Continue, "continue");

    internal static DecidedAction Ignored { get; } = new(DecidedActionKind.Ignored, "ignored");

    internal static DecidedAction GuestReset { get; } = new(DecidedActionKind.GuestReset, "guest-reset");

    // An escalation step that was due found the guest recovered: nothing done, the escalation ends.
    internal static DecidedAction Cancelled { get; } = new(DecidedActionKind.Cancelled, "cancelled");

    internal DecidedActionKind Kind { get; }

    internal string Name { get; }

    internal static DecidedAction Panic(PanicAction action) => new(DecidedActionKind.Panic, PolicyNames.Of(action));

    internal static DecidedAction Watchdog(WatchdogAction action) => new(DecidedActionKind.Watchdog, PolicyNames.Of(action));

    public override string ToString() => Name;
}
