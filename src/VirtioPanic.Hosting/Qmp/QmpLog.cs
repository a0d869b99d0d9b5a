using Microsoft.Extensions.Logging;

namespace VirtioPanic.Hosting.Qmp;

// Log messages of the QMP client. Event ids are stable and never reused. A monitor that drops and
// comes back in a loop would repeat the connect/disconnect lines: they are logged on state
// changes only (connected after not connected, and the reverse), and a failed reconnect attempt
// is logged once until the next success.
internal static partial class QmpLog
{
    [LoggerMessage(EventId = 6100, Level = LogLevel.Information, Message = "QMP monitor {Path} connected ({Version}); VM is {Status}")]
    internal static partial void Connected(ILogger logger, string path, string version, string status);

    [LoggerMessage(EventId = 6101, Level = LogLevel.Warning, Message = "QMP monitor {Path} lost: {Reason}; reconnecting")]
    internal static partial void Disconnected(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 6102, Level = LogLevel.Warning, Message = "QMP monitor {Path} not reachable: {Reason}; retrying until it is")]
    internal static partial void ConnectFailed(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 6103, Level = LogLevel.Information, Message = "QMP {Command} for {DeviceId}: {Outcome}")]
    internal static partial void CommandDone(ILogger logger, string command, string deviceId, string outcome);

    [LoggerMessage(EventId = 6104, Level = LogLevel.Warning, Message = "QMP {Command} for {DeviceId} failed: {Outcome}")]
    internal static partial void CommandFailed(ILogger logger, string command, string deviceId, string outcome);

    [LoggerMessage(EventId = 6105, Level = LogLevel.Information, Message = "QMP: VM {Status} ({Event})")]
    internal static partial void RunState(ILogger logger, string status, string @event);

    [LoggerMessage(EventId = 6106, Level = LogLevel.Information, Message = "Device {DeviceId}: its rings stopped while the VM kept running (QMP query-status, no STOP): a driver reset; the device is reset")]
    internal static partial void RingStopWasDriverReset(ILogger logger, string deviceId);
}
