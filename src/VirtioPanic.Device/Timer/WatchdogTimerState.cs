namespace VirtioPanic.Device.Timer;

// The saved form of WatchdogTimer (all times are VM run time).
internal readonly record struct WatchdogTimerState
{
    public TimeSpan RunTime { get; init; }

    public bool Armed { get; init; }

    public bool Nowayout { get; init; }

    public bool Expired { get; init; }

    public bool PretimeoutFired { get; init; }

    public TimeSpan Timeout { get; init; }

    public TimeSpan Pretimeout { get; init; }

    public TimeSpan LastKeepalive { get; init; }

    public TimeSpan GraceFloor { get; init; }

    public long Countdown { get; init; }

    public bool NoticePending { get; init; }

    public TimeSpan NoticeTimeLeft { get; init; }

    // When the pending notice fired among all notices (NoticeOrder); 0 when none is pending or
    // unknown (a version-1 image).
    public long NoticeOrder { get; init; }
}
