namespace VirtioPanic.Device.Timer;

internal enum WatchdogTransitionKind
{
    None,
    Armed,
    Stopped,
    Pretimeout,
    Expired,
}
