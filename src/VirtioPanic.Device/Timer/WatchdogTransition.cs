namespace VirtioPanic.Device.Timer;

// A change of watchdog state the device turns into a host event.
internal readonly record struct WatchdogTransition(WatchdogTransitionKind Kind, TimeSpan VmRunTime)
{
    public TimeSpan Timeout { get; init; }

    public TimeSpan Pretimeout { get; init; }

    public TimeSpan TimeLeft { get; init; }

    public WatchdogStopReason StopReason { get; init; }

    public bool ByHeartbeat { get; init; }
}
