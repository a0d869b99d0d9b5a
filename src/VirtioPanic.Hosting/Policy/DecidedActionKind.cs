namespace VirtioPanic.Hosting.Policy;

// Which kind of action a decision is (see DecidedAction).
internal enum DecidedActionKind
{
    Panic,
    Watchdog,
    Log,
    Grace,
    Continue,
    GuestReset,
    Ignored,
    Cancelled,
}
