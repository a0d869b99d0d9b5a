namespace VirtioPanic.Device.Timer;

// What the driver asks of the watchdog timer through a control request (spec §6.3 "Control
// requests"). The watchdogq worker decodes the wire command into one of these
// (WatchdogControlWire.TryDecodeCommand); the timer never sees a wire code.
internal enum WatchdogCommand
{
    GetStatus,
    Start,
    Stop,
    Keepalive,
    SetTimeout,
    SetPretimeout,
    SetNowayout,
}
