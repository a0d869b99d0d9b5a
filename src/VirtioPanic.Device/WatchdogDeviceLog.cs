using Microsoft.Extensions.Logging;

namespace VirtioPanic.Device;

// Structured log messages of the watchdog device. Event ids are stable and never reused.
// Guest-triggerable warnings (protocol errors, ring errors) go through LogRateLimiter (src/Common) first.
internal static partial class WatchdogDeviceLog
{
    [LoggerMessage(EventId = 5001, Level = LogLevel.Information, Message = "Watchdog {DeviceId} armed with timeout {Timeout}")]
    internal static partial void Armed(ILogger logger, string deviceId, TimeSpan timeout);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Watchdog {DeviceId} stopped ({Reason})")]
    internal static partial void Stopped(ILogger logger, string deviceId, WatchdogStopReason reason);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Watchdog {DeviceId} pretimeout: {TimeLeft} of run time left")]
    internal static partial void Pretimeout(ILogger logger, string deviceId, TimeSpan timeLeft);

    [LoggerMessage(EventId = 5004, Level = LogLevel.Error, Message = "Watchdog {DeviceId} expired after {Timeout} of run time without a keepalive")]
    internal static partial void Expired(ILogger logger, string deviceId, TimeSpan timeout);

    [LoggerMessage(EventId = 5005, Level = LogLevel.Error, Message = "Guest behind {DeviceId} reported {Kind} via {Source} (vCPU {VcpuId}): {Message}")]
    internal static partial void GuestReport(ILogger logger, string deviceId, WatchdogEventKind kind, WatchdogEventSource source, uint? vcpuId, string? message);

    [LoggerMessage(EventId = 5006, Level = LogLevel.Warning, Message = "Guest protocol error on {DeviceId} queue {QueueIndex}: {Error} ({Detail}); {Suppressed} similar warnings suppressed before this one")]
    internal static partial void ProtocolError(ILogger logger, string deviceId, int queueIndex, WatchdogProtocolError error, string detail, long suppressed);

    [LoggerMessage(EventId = 5007, Level = LogLevel.Information, Message = "Driver reset device {DeviceId} (watchdog kept running: {KeptRunning})")]
    internal static partial void DriverReset(ILogger logger, string deviceId, bool keptRunning);

    [LoggerMessage(EventId = 5008, Level = LogLevel.Warning, Message = "Host is not draining events of {DeviceId}: {Kind} coalesced ({Count} so far)")]
    internal static partial void EventCoalesced(ILogger logger, string deviceId, WatchdogEventKind kind, long count);

    [LoggerMessage(EventId = 5009, Level = LogLevel.Debug, Message = "Host is not draining events of {DeviceId}: {Kind} dropped ({Count} so far)")]
    internal static partial void EventDropped(ILogger logger, string deviceId, WatchdogEventKind kind, long count);

    [LoggerMessage(EventId = 5010, Level = LogLevel.Information, Message = "Device {DeviceId} activated with features {Features}")]
    internal static partial void Activated(ILogger logger, string deviceId, WatchdogFeatures features);

    [LoggerMessage(EventId = 5011, Level = LogLevel.Information, Message = "Device {DeviceId} state restored: armed {Armed}, time left {TimeLeft}")]
    internal static partial void Restored(ILogger logger, string deviceId, bool armed, TimeSpan? timeLeft);

    // Logged for the first fault of a device only (later ones are counted, not logged).
    [LoggerMessage(EventId = 5012, Level = LogLevel.Error, Message = "Device {DeviceId} caught an unexpected exception in {Where}; later faults of this device are not logged")]
    internal static partial void InternalFault(ILogger logger, Exception exception, string deviceId, string where);

    [LoggerMessage(EventId = 5013, Level = LogLevel.Warning, Message = "Device {DeviceId} refused a state image: {Status} ({Reason}); the device state is unchanged")]
    internal static partial void RestoreRefused(ILogger logger, string deviceId, VirtioPanic.Virtio.Device.SnapshotStatus status, string reason);

    [LoggerMessage(EventId = 5014, Level = LogLevel.Information, Message = "Device {DeviceId} suspended: its rings stopped (a VM stop or a driver reset); the watchdog's clock is stopped and {Held} held record buffers are kept")]
    internal static partial void Suspended(ILogger logger, string deviceId, int held);

    [LoggerMessage(EventId = 5015, Level = LogLevel.Information, Message = "Device {DeviceId} resumed: its rings restarted where they stopped")]
    internal static partial void Resumed(ILogger logger, string deviceId);

    [LoggerMessage(EventId = 5016, Level = LogLevel.Warning, Message = "Device {DeviceId}: vCPU {Vcpu} stalled ({StalledFor} of its run time without a pet); the guest was sent a notice")]
    internal static partial void VcpuStalled(ILogger logger, string deviceId, int vcpu, TimeSpan stalledFor);

    [LoggerMessage(EventId = 5017, Level = LogLevel.Information, Message = "Device {DeviceId}: vCPU {Vcpu} recovered {SinceStall} after its stall")]
    internal static partial void VcpuRecovered(ILogger logger, string deviceId, int vcpu, TimeSpan sinceStall);

    [LoggerMessage(EventId = 5018, Level = LogLevel.Error, Message = "Device {DeviceId}: vCPU {Vcpu} still stalled {SinceStall} after the notice (second stage); it is no longer tracked")]
    internal static partial void VcpuStallExpired(ILogger logger, string deviceId, int vcpu, TimeSpan sinceStall);
}
