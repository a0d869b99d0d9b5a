using Microsoft.Extensions.Logging;

namespace VirtioPanic.Host;

// Structured log messages of the host program and its demo VM. Event ids (7001-7099) are stable and never reused.
internal static partial class HostLog
{
    [LoggerMessage(EventId = 7001, Level = LogLevel.Information, Message = "[{Uptime,9:0.000}] {Line}")]
    internal static partial void GuestKernel(ILogger logger, double uptime, string line);

    [LoggerMessage(EventId = 7002, Level = LogLevel.Information, Message = "Demo VM: scenario {Scenario}, {Transport} transport, {Ring} rings, device {DeviceId}; policy: panic → {OnPanic}, watchdog → {OnWatchdog}")]
    internal static partial void DemoStarting(ILogger logger, string scenario, string transport, string ring, string deviceId, string onPanic, string onWatchdog);

    [LoggerMessage(EventId = 7003, Level = LogLevel.Warning, Message = "VM paused by the policy ({Action})")]
    internal static partial void VmPaused(ILogger logger, string action);

    [LoggerMessage(EventId = 7004, Level = LogLevel.Information, Message = "VM resumed")]
    internal static partial void VmResumed(ILogger logger);

    [LoggerMessage(EventId = 7005, Level = LogLevel.Warning, Message = "VM reset by the policy ({Action}); the guest reboots")]
    internal static partial void VmReset(ILogger logger, string action);

    [LoggerMessage(EventId = 7006, Level = LogLevel.Warning, Message = "VM powered off ({Why})")]
    internal static partial void VmPoweredOff(ILogger logger, string why);

    [LoggerMessage(EventId = 7007, Level = LogLevel.Information, Message = "ACPI power button pressed")]
    internal static partial void VmPowerButton(ILogger logger);

    [LoggerMessage(EventId = 7008, Level = LogLevel.Information, Message = "Guest memory dumped to {Path} ({Bytes} bytes)")]
    internal static partial void VmDumped(ILogger logger, string path, ulong bytes);

    [LoggerMessage(EventId = 7009, Level = LogLevel.Warning, Message = "NMI injected into vCPU 0")]
    internal static partial void VmNmi(ILogger logger);

    [LoggerMessage(EventId = 7010, Level = LogLevel.Information, Message = "Guest rebooted itself")]
    internal static partial void GuestRebooted(ILogger logger);

    [LoggerMessage(EventId = 7011, Level = LogLevel.Error, Message = "The demo guest failed")]
    internal static partial void GuestCrashed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 7012, Level = LogLevel.Information, Message = "Management query:\n{Json}")]
    internal static partial void StatusQuery(ILogger logger, string json);

    [LoggerMessage(EventId = 7013, Level = LogLevel.Information, Message = "Management: Continue {DeviceId} → {Outcome}")]
    internal static partial void Continued(ILogger logger, string deviceId, string outcome);

    [LoggerMessage(EventId = 7014, Level = LogLevel.Error, Message = "The demo did not finish within {Limit}")]
    internal static partial void DemoTimedOut(ILogger logger, TimeSpan limit);

    [LoggerMessage(EventId = 7020, Level = LogLevel.Information, Message = "Serving device {DeviceId} on vhost-user socket {Path}; policy: panic → {OnPanic}, watchdog → {OnWatchdog}; QMP: {Qmp}. Ctrl-C stops.")]
    internal static partial void Serving(ILogger logger, string deviceId, string path, string onPanic, string onWatchdog, string qmp);

    [LoggerMessage(EventId = 7021, Level = LogLevel.Warning, Message = "vhost-user mode: the front end owns the VM, so {Operation} ({Action}) for {DeviceId} was not carried out")]
    internal static partial void FrontEndOwnsVm(ILogger logger, string operation, string action, string deviceId);

    [LoggerMessage(EventId = 7022, Level = LogLevel.Warning, Message = "{Count} similar messages ({Kind}) were not logged")]
    internal static partial void LinesSuppressed(ILogger logger, long count, string kind);
}
