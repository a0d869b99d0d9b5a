namespace VirtioPanic.Device.Timer;

// The result of one command and the timer's state right after it, taken under the timer's lock in
// the same hold as the command (spec §6.3: every response carries the state after the command).
// TimeLeft is zero when disarmed.
internal readonly record struct WatchdogControlOutcome(
    WatchdogCommandResult Result,
    bool Armed,
    bool Nowayout,
    bool Expired,
    bool PretimeoutFired,
    TimeSpan Timeout,
    TimeSpan Pretimeout,
    TimeSpan TimeLeft);
