namespace VirtioPanic.GuestDriver.Watchdog;

/// <summary>The <c>flags</c> of a control response (spec §6.3).</summary>
[Flags]
public enum WatchdogStateFlags : ushort
{
    /// <summary>None.</summary>
    None = 0,

    /// <summary>ARMED: the watchdog is counting down.</summary>
    Armed = 0x1,

    /// <summary>NOWAYOUT: the driver can no longer stop it.</summary>
    Nowayout = 0x2,

    /// <summary>EXPIRED: it expired and has not been armed since.</summary>
    Expired = 0x4,

    /// <summary>PRETIMEOUT_FIRED: the current countdown's pretimeout point has passed.</summary>
    PretimeoutFired = 0x8,
}
