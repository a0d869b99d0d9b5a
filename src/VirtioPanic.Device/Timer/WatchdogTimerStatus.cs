namespace VirtioPanic.Device.Timer;

internal readonly record struct WatchdogTimerStatus(bool Armed, bool Nowayout, bool Expired, bool Paused, TimeSpan Timeout, TimeSpan Pretimeout, TimeSpan? TimeLeft, TimeSpan RunTime);
