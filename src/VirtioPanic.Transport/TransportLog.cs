using Microsoft.Extensions.Logging;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Transport;

// Log messages of the transports. EventIds are stable and never reused: add new ones at the end.
// Every message a guest can trigger goes through AccessReporter, which rate-limits it.
internal static partial class TransportLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Debug,
        Message = "{Transport}: invalid {Direction} of {Width} byte(s) at {Region} offset 0x{Offset:X} ({Kind})")]
    internal static partial void InvalidAccess(ILogger logger, string transport, string direction, int width, AccessRegion region, ulong offset, InvalidAccessKind kind);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug,
        Message = "{Transport}: {Count} further invalid guest accesses were counted but not logged")]
    internal static partial void InvalidAccessesSuppressed(ILogger logger, string transport, long count);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug,
        Message = "{Transport}: driver wrote device status 0x{Value:X2}: {Result}")]
    internal static partial void StatusWrite(ILogger logger, string transport, byte value, DeviceStatusWriteResult result);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug,
        Message = "{Transport}: write of 0x{Value:X} to {Register} rejected: {Result}")]
    internal static partial void RegisterWriteRejected(ILogger logger, string transport, string register, ulong value, RegisterWriteResult result);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug,
        Message = "{Transport}: queue {Queue} configuration rejected ({QueueStatus}); DEVICE_NEEDS_RESET set")]
    internal static partial void QueueRejected(ILogger logger, string transport, int queue, VirtqueueStatus queueStatus);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning,
        Message = "{Transport}: snapshot refused ({Status}); the transport is in its power-on state")]
    internal static partial void SnapshotRefused(ILogger logger, string transport, SnapshotStatus status);

    [LoggerMessage(EventId = 7, Level = LogLevel.Error,
        Message = "{Transport}: the device threw from {Operation}; contained as DEVICE_NEEDS_RESET (later device faults of this transport are counted, not logged)")]
    internal static partial void DeviceFault(ILogger logger, Exception exception, string transport, string operation);
}
