namespace VirtioPanic.GuestDriver.Watchdog;

/// <summary>The device's watchdog state as a control response reports it (spec §6.3).</summary>
/// <param name="Flags">ARMED, NOWAYOUT, EXPIRED, PRETIMEOUT_FIRED.</param>
/// <param name="Timeout">Current timeout.</param>
/// <param name="Pretimeout">Current pretimeout (zero for none).</param>
/// <param name="TimeLeft">Run time to the deadline (zero when disarmed).</param>
public readonly record struct WatchdogState(WatchdogStateFlags Flags, TimeSpan Timeout, TimeSpan Pretimeout, TimeSpan TimeLeft);
