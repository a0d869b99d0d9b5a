using Microsoft.Extensions.Logging;
using VirtioPanic.VhostUser.Protocol;

namespace VirtioPanic.VhostUser;

// Log messages of the vhost-user back end. Event ids are stable and never reused (18, a
// per-connection rejection summary, was retired for Suppressed; 22, the carrier's implied
// features, went with the carrier). Every line a front end can
// trigger goes through VhostUserLimitedLogger (per connection and per back end, with a
// "N similar messages were not logged" summary), so a hostile front end cannot flood the log;
// only Listening and Stopped, which the host alone causes, bypass it.
internal static partial class VhostUserLog
{
    internal const int SuppressedId = 23;

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "vhost-user back end for virtio device {DeviceId} listening on {SocketPath}")]
    internal static partial void Listening(ILogger logger, uint deviceId, string socketPath);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "vhost-user front end connected (connection {Connection})")]
    internal static partial void Connected(ILogger logger, long connection);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "vhost-user connection {Connection} closed after {Messages} messages ({Reason})")]
    internal static partial void Disconnected(ILogger logger, long connection, long messages, string reason);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "vhost-user {Request} ({RequestCode}) rejected: {Reason}")]
    internal static partial void MessageRejected(ILogger logger, VhostUserRequest request, uint requestCode, string reason);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "vhost-user connection {Connection} dropped: {Reason}")]
    internal static partial void ConnectionDropped(ILogger logger, long connection, string reason);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "vhost-user features negotiated: 0x{Features:x} (offered 0x{Offered:x})")]
    internal static partial void FeaturesNegotiated(ILogger logger, ulong features, ulong offered);

    [LoggerMessage(EventId = 7, Level = LogLevel.Information, Message = "vhost-user front end acked features it was not offered: 0x{Bits:x} honoured (ring features), 0x{Ignored:x} ignored")]
    internal static partial void UnofferedFeatures(ILogger logger, ulong bits, ulong ignored);

    [LoggerMessage(EventId = 8, Level = LogLevel.Debug, Message = "vhost-user memory table: {Regions} regions mapped")]
    internal static partial void MemoryTableMapped(ILogger logger, int regions);

    [LoggerMessage(EventId = 9, Level = LogLevel.Debug, Message = "vhost-user ring {Ring} started: size {Size}, next avail {NextAvail}, descriptors 0x{Descriptors:x}, avail 0x{Avail:x}, used 0x{Used:x} (guest-physical)")]
    internal static partial void RingStarted(ILogger logger, int ring, ushort size, ushort nextAvail, ulong descriptors, ulong avail, ulong used);

    [LoggerMessage(EventId = 10, Level = LogLevel.Debug, Message = "vhost-user ring {Ring} stopped at avail index {NextAvail}")]
    internal static partial void RingStopped(ILogger logger, int ring, ushort nextAvail);

    [LoggerMessage(EventId = 11, Level = LogLevel.Warning, Message = "vhost-user ring {Ring} cannot start: {Reason}")]
    internal static partial void RingStartFailed(ILogger logger, int ring, string reason);

    [LoggerMessage(EventId = 12, Level = LogLevel.Information, Message = "virtio device {DeviceId} activated over vhost-user with features 0x{Features:x}")]
    internal static partial void DeviceActivated(ILogger logger, uint deviceId, ulong features);

    [LoggerMessage(EventId = 13, Level = LogLevel.Information, Message = "virtio device {DeviceId} reset ({Reason})")]
    internal static partial void DeviceReset(ILogger logger, uint deviceId, string reason);

    [LoggerMessage(EventId = 26, Level = LogLevel.Information, Message = "vhost-user device {DeviceId} suspended: its rings stopped (a VM stop or a driver reset); it continues if they restart where they stopped")]
    internal static partial void DeviceSuspended(ILogger logger, uint deviceId);

    [LoggerMessage(EventId = 27, Level = LogLevel.Information, Message = "vhost-user device {DeviceId} resumed: every ring restarted where it stopped")]
    internal static partial void DeviceResumed(ILogger logger, uint deviceId);

    [LoggerMessage(EventId = 14, Level = LogLevel.Error, Message = "virtio device {DeviceId} needs a reset; its rings are stopped until the front end restarts them")]
    internal static partial void DeviceNeedsReset(ILogger logger, uint deviceId);

    [LoggerMessage(EventId = 15, Level = LogLevel.Debug, Message = "vhost-user configuration change sent to the front end")]
    internal static partial void ConfigChangeSent(ILogger logger);

    [LoggerMessage(EventId = 16, Level = LogLevel.Information, Message = "virtio device configuration changed, but the front end set up no back-end request channel with CONFIG: not forwarded")]
    internal static partial void ConfigChangeNotForwarded(ILogger logger);

    [LoggerMessage(EventId = 17, Level = LogLevel.Error, Message = "virtio device {DeviceId} threw from {Operation}; treating it as needing a reset")]
    internal static partial void DeviceFault(ILogger logger, Exception exception, uint deviceId, string operation);


    [LoggerMessage(EventId = 19, Level = LogLevel.Warning, Message = "vhost-user configuration change could not be sent (errno {Errno})")]
    internal static partial void ConfigChangeFailed(ILogger logger, int errno);

    [LoggerMessage(EventId = 21, Level = LogLevel.Trace, Message = "vhost-user received {Request} ({RequestCode}), flags 0x{Flags:x}, {Size} payload bytes, {Fds} descriptors")]
    internal static partial void MessageReceived(ILogger logger, VhostUserRequest request, uint requestCode, uint flags, int size, int fds);


    [LoggerMessage(EventId = 20, Level = LogLevel.Information, Message = "vhost-user back end on {SocketPath} stopped")]
    internal static partial void Stopped(ILogger logger, string socketPath);

    [LoggerMessage(EventId = SuppressedId, Level = LogLevel.Warning, Message = "vhost-user: {Count} similar messages ({Kind}) were not logged")]
    internal static partial void Suppressed(ILogger logger, long count, string kind);

    [LoggerMessage(EventId = 24, Level = LogLevel.Warning, Message = "vhost-user connection refused: connection {Connection} is being served and vhost-user has one front end per socket")]
    internal static partial void ConnectionRefused(ILogger logger, long connection);

    [LoggerMessage(EventId = 25, Level = LogLevel.Warning, Message = "vhost-user connection {Connection}: guest memory comes from a file not sealed against shrinking (F_SEAL_SHRINK); the front end can truncate it under the back end, whose next access to it then kills the process (SIGBUS). RequireSealedMemory refuses such memory")]
    internal static partial void UnsealedMemory(ILogger logger, long connection);

    // The name of a line's kind, for suppression summaries.
    internal static string KindOf(int eventId) => eventId switch
    {
        1 => nameof(Listening),
        2 => nameof(Connected),
        3 => nameof(Disconnected),
        4 => nameof(MessageRejected),
        5 => nameof(ConnectionDropped),
        6 => nameof(FeaturesNegotiated),
        7 => nameof(UnofferedFeatures),
        8 => nameof(MemoryTableMapped),
        9 => nameof(RingStarted),
        10 => nameof(RingStopped),
        11 => nameof(RingStartFailed),
        12 => nameof(DeviceActivated),
        13 => nameof(DeviceReset),
        14 => nameof(DeviceNeedsReset),
        15 => nameof(ConfigChangeSent),
        16 => nameof(ConfigChangeNotForwarded),
        17 => nameof(DeviceFault),
        19 => nameof(ConfigChangeFailed),
        20 => nameof(Stopped),
        21 => nameof(MessageReceived),
        24 => nameof(ConnectionRefused),
        25 => nameof(UnsealedMemory),
        26 => nameof(DeviceSuspended),
        27 => nameof(DeviceResumed),
        SuppressedId => nameof(Suppressed),
        _ => $"event {eventId}",
    };
}
