namespace VirtioPanic.Hosting.Tests;

// The parts of QEMU's QMP schema that our events share, checked in by hand from QEMU's
// qapi/run-state.json (events GUEST_PANICKED, GUEST_CRASHLOADED, GUEST_PVSHUTDOWN, WATCHDOG; enums
// GuestPanicAction, WatchdogAction; union GuestPanicInformation with GuestPanicInformationHyperV).
// Facts, not code: the members each event's `data` has and the values an enum allows.
internal static class QmpSchema
{
    internal static readonly string[] GuestPanicAction = ["pause", "poweroff", "run"];

    internal static readonly string[] WatchdogAction = ["reset", "shutdown", "poweroff", "pause", "debug", "none", "inject-nmi"];

    // GuestPanicInformationType: the union's discriminator values; hyper-v's members.
    internal static readonly string[] GuestPanicInformationType = ["hyper-v", "s390"];

    internal static readonly string[] HyperVMembers = ["type", "arg1", "arg2", "arg3", "arg4", "arg5"];

    // Event name -> (data members allowed, data members required, the enum of `action`); null data: the event has none.
    internal static readonly Dictionary<string, (string[] Allowed, string[] Required, string[] Action)?> Events = new()
    {
        ["GUEST_PANICKED"] = (["action", "info"], ["action"], GuestPanicAction),
        ["GUEST_CRASHLOADED"] = (["action", "info"], ["action"], GuestPanicAction),
        ["WATCHDOG"] = (["action"], ["action"], WatchdogAction),
        ["GUEST_PVSHUTDOWN"] = null,
    };
}
