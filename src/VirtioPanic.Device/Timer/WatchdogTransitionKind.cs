namespace VirtioPanic.Device;

internal enum WatchdogTransitionKind
{
    None,
    Armed,
    Stopped,
    Pretimeout,
    Expired,
}
