namespace VirtioPanic.GuestDriver.Watchdog;

/// <summary>A pretimeout notice the device delivered on <c>noticeq</c> (spec §6.4).</summary>
/// <param name="TimeLeft">Run time to the deadline when the notice fired.</param>
/// <param name="Timeout">The timeout of the countdown.</param>
/// <param name="Pretimeout">The pretimeout of the countdown.</param>
public readonly record struct PretimeoutNotice(TimeSpan TimeLeft, TimeSpan Timeout, TimeSpan Pretimeout);
