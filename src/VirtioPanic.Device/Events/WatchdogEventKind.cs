namespace VirtioPanic.Device;

/// <summary>The kind of a <see cref="WatchdogEvent"/>, one per event record type.</summary>
public enum WatchdogEventKind
{
    /// <summary><see cref="WatchdogArmedEvent"/>.</summary>
    Armed,

    /// <summary><see cref="WatchdogStoppedEvent"/>.</summary>
    Stopped,

    /// <summary><see cref="WatchdogPretimeoutEvent"/>.</summary>
    Pretimeout,

    /// <summary><see cref="WatchdogExpiredEvent"/>.</summary>
    Expired,

    /// <summary><see cref="GuestPanickedEvent"/>.</summary>
    GuestPanicked,

    /// <summary><see cref="GuestCrashLoadedEvent"/>.</summary>
    GuestCrashLoaded,

    /// <summary><see cref="GuestShutdownEvent"/>.</summary>
    GuestShutdown,

    /// <summary><see cref="GuestProtocolErrorEvent"/>.</summary>
    ProtocolError,

    /// <summary><see cref="DriverResetEvent"/>.</summary>
    DriverReset,

    /// <summary><see cref="VcpuStalledEvent"/> (stage one of a vCPU stall).</summary>
    VcpuStalled,

    /// <summary><see cref="VcpuRecoveredEvent"/>.</summary>
    VcpuRecovered,

    /// <summary><see cref="VcpuStallExpiredEvent"/> (stage two of a vCPU stall).</summary>
    VcpuStallExpired,
}
