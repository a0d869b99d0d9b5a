namespace VirtioPanic.Device.Timer;

// How the watchdog timer answered a command (spec §6.3, the status table); the watchdogq worker
// encodes it as the wire status (WatchdogControlWire.EncodeResponse).
internal enum WatchdogCommandResult
{
    Ok,

    // SET_PRETIMEOUT without PRETIMEOUT negotiated (an unknown wire command never reaches the timer).
    Unsupported,

    // A timeout outside [min, max] or a pretimeout not below the timeout; nothing changed.
    Invalid,

    // STOP while NOWAYOUT is set.
    Denied,

    // KEEPALIVE while disarmed.
    NotArmed,
}
