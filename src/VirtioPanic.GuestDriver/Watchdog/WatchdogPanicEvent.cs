namespace VirtioPanic.GuestDriver.Watchdog;

/// <summary>The event bits of <c>panic_events</c> (spec §6.6; pvpanic's bits).</summary>
public enum WatchdogPanicEvent : uint
{
    /// <summary>PANICKED: the guest panicked.</summary>
    Panicked = 0x1,

    /// <summary>CRASH_LOADED: the guest panicked and a crash kernel will handle it.</summary>
    CrashLoaded = 0x2,

    /// <summary>SHUTDOWN: the guest is shutting down normally.</summary>
    Shutdown = 0x4,
}
