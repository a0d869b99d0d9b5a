using Microsoft.Extensions.Logging;

namespace VirtioPanic.Hosting.Control;

// Log messages of the management socket. Event ids are stable and never reused. A client cannot
// repeat a line faster than it can connect, and refusals are logged once per refused connection
// while 16 are open: bounded by the socket's listen backlog.
internal static partial class ManagementLog
{
    [LoggerMessage(EventId = 6200, Level = LogLevel.Information, Message = "Management socket listening on {Path} (QMP framing, owner only)")]
    internal static partial void Listening(ILogger logger, string path);

    [LoggerMessage(EventId = 6201, Level = LogLevel.Warning, Message = "Management socket {Path}: connection refused, {Max} clients are connected")]
    internal static partial void Refused(ILogger logger, string path, int max);
}
