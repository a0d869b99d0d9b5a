using Microsoft.Extensions.Logging;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

// Structured log messages of the policy service. Event ids (6001-6099) are stable and never reused.
// Property names are shared: DeviceId, VcpuId, Sequence, Action, Outcome, Operation.
internal static partial class VirtioPanicLog
{
    [LoggerMessage(EventId = 6001, Level = LogLevel.Error, Message = "Guest panicked on {DeviceId} (vCPU {VcpuId}, sequence {Sequence}): {PanicMessage} → policy {Action}")]
    internal static partial void GuestPanicked(ILogger logger, string deviceId, uint? vcpuId, long sequence, string? panicMessage, string action);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Error, Message = "Watchdog {DeviceId} expired after {TimeoutMs:0} ms of run time without a keepalive (sequence {Sequence}) → policy {Action}")]
    internal static partial void WatchdogExpired(ILogger logger, string deviceId, double timeoutMs, long sequence, string action);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Warning, Message = "Guest on {DeviceId} loaded its crash kernel (vCPU {VcpuId}, sequence {Sequence}): {PanicMessage}")]
    internal static partial void CrashLoaded(ILogger logger, string deviceId, uint? vcpuId, long sequence, string? panicMessage);

    [LoggerMessage(EventId = 6004, Level = LogLevel.Warning, Message = "Watchdog {DeviceId} pretimeout: {TimeLeftMs:0} ms left (sequence {Sequence}); the guest was notified")]
    internal static partial void Pretimeout(ILogger logger, string deviceId, double timeLeftMs, long sequence);

    [LoggerMessage(EventId = 6005, Level = LogLevel.Information, Message = "Guest on {DeviceId} reported a shutdown (sequence {Sequence})")]
    internal static partial void GuestShutdown(ILogger logger, string deviceId, long sequence);

    [LoggerMessage(EventId = 6006, Level = LogLevel.Information, Message = "{DeviceId} {EventName} (sequence {Sequence})")]
    internal static partial void OtherEvent(ILogger logger, string deviceId, string eventName, long sequence);

    [LoggerMessage(EventId = 6070, Level = LogLevel.Warning, Message = "vCPU {VcpuId} on {DeviceId} stalled: {StalledForMs:0} ms of its run time without a pet (sequence {Sequence}); the guest was told, stage two in {SecondStageMs:0} ms")]
    internal static partial void VcpuStalled(ILogger logger, string deviceId, int vcpuId, double stalledForMs, long sequence, double secondStageMs);

    [LoggerMessage(EventId = 6071, Level = LogLevel.Information, Message = "vCPU {VcpuId} on {DeviceId} recovered {SinceStallMs:0} ms after its stall (sequence {Sequence})")]
    internal static partial void VcpuRecovered(ILogger logger, string deviceId, int vcpuId, double sinceStallMs, long sequence);

    [LoggerMessage(EventId = 6072, Level = LogLevel.Error, Message = "vCPU {VcpuId} on {DeviceId} is still stalled {SinceStallMs:0} ms after the guest was told (stage two, sequence {Sequence}) → policy {Action}")]
    internal static partial void VcpuStallExpired(ILogger logger, string deviceId, int vcpuId, double sinceStallMs, long sequence, string action);

    [LoggerMessage(EventId = 6007, Level = LogLevel.Warning, Message = "{DeviceId}: {Note}")]
    internal static partial void PolicyNote(ILogger logger, string deviceId, string note);

    [LoggerMessage(EventId = 6010, Level = LogLevel.Information, Message = "{DeviceId} sequence {Sequence}: {Action} → {Operation} {Outcome} in {ElapsedMs:0.000} ms")]
    internal static partial void ActionSucceeded(ILogger logger, string deviceId, long sequence, string action, string operation, string outcome, double elapsedMs);

    [LoggerMessage(EventId = 6011, Level = LogLevel.Error, Message = "{DeviceId} sequence {Sequence}: {Action} → {Operation} {Outcome} after {ElapsedMs:0.000} ms: {Error}")]
    internal static partial void ActionFailed(ILogger logger, string deviceId, long sequence, string action, string operation, string outcome, double elapsedMs, string? error);

    [LoggerMessage(EventId = 6012, Level = LogLevel.Warning, Message = "{DeviceId} sequence {Sequence}: {Failed} failed; fallback {Fallback}")]
    internal static partial void Fallback(ILogger logger, string deviceId, long sequence, string failed, string fallback);

    [LoggerMessage(EventId = 6013, Level = LogLevel.Critical, Message = "{DeviceId} sequence {Sequence}: {Action} failed and no fallback is left ({Error})")]
    internal static partial void ActionExhausted(ILogger logger, string deviceId, long sequence, string action, string? error);

    [LoggerMessage(EventId = 6020, Level = LogLevel.Error, Message = "Panic storm on {DeviceId}: {Note}")]
    internal static partial void StormGuardTripped(ILogger logger, string deviceId, string note);

    [LoggerMessage(EventId = 6030, Level = LogLevel.Information, Message = "Journal {Path} opened: {Records} records, run {Run}")]
    internal static partial void JournalOpened(ILogger logger, string path, int records, string run);

    [LoggerMessage(EventId = 6031, Level = LogLevel.Warning, Message = "Journal: {Name} on {DeviceId} (sequence {Sequence}, run {Run}, {Time}) was journaled with action {Action} but never acted on")]
    internal static partial void UnactedEvent(ILogger logger, string name, string deviceId, long sequence, string run, DateTimeOffset time, string action);

    [LoggerMessage(EventId = 6032, Level = LogLevel.Warning, Message = "Journal {Path} ended with a torn line ({Bytes} bytes, a write cut short); it was cut off")]
    internal static partial void TornLine(ILogger logger, string path, long bytes);

    [LoggerMessage(EventId = 6033, Level = LogLevel.Warning, Message = "Journal {Path} has {Count} corrupt lines; they were skipped")]
    internal static partial void CorruptLines(ILogger logger, string path, int count);

    // 6034 (a per-event "journal write failed") is retired: a failing journal is now reported once, by 6035.
    [LoggerMessage(EventId = 6035, Level = LogLevel.Critical, Message = "Journal {Path} is not working ({Error}); running degraded: events are still acted on, but not journaled until a write succeeds again")]
    internal static partial void JournalDegraded(ILogger logger, Exception exception, string path, string error);

    [LoggerMessage(EventId = 6036, Level = LogLevel.Warning, Message = "Journal {Path} writes succeed again; degraded mode is over")]
    internal static partial void JournalRestored(ILogger logger, string path);

    [LoggerMessage(EventId = 6037, Level = LogLevel.Warning, Message = "Journal {Path} could not be rotated; it keeps growing and rotation is retried")]
    internal static partial void JournalRotationFailed(ILogger logger, Exception exception, string path);

    [LoggerMessage(EventId = 6038, Level = LogLevel.Warning, Message = "Journal {Path} is larger than start-up reads: its first {Bytes} bytes were not read (only its tail can hold what was not acted on); it is rotated now")]
    internal static partial void JournalSkipped(ILogger logger, string path, long bytes);

    [LoggerMessage(EventId = 6050, Level = LogLevel.Warning, Message = "{DeviceId}: {Count} similar messages suppressed in the last {WindowSeconds:0} s (the guest reports faster than the log should follow; every event is still journaled and counted)")]
    internal static partial void DeviceLinesSuppressed(ILogger logger, string deviceId, long count, double windowSeconds);

    [LoggerMessage(EventId = 6051, Level = LogLevel.Warning, Message = "{Count} similar messages suppressed in the last {WindowSeconds:0} s across all devices (every event is still journaled and counted)")]
    internal static partial void LinesSuppressed(ILogger logger, long count, double windowSeconds);

    [LoggerMessage(EventId = 6040, Level = LogLevel.Information, Message = "Device {DeviceId} attached: panic → {OnPanic}, watchdog → {OnWatchdog}")]
    internal static partial void DeviceAttached(ILogger logger, string deviceId, string onPanic, string onWatchdog);

    [LoggerMessage(EventId = 6041, Level = LogLevel.Information, Message = "Device {DeviceId} detached")]
    internal static partial void DeviceDetached(ILogger logger, string deviceId);

    [LoggerMessage(EventId = 6042, Level = LogLevel.Information, Message = "Policy of {DeviceId} changed: panic → {OnPanic}, watchdog → {OnWatchdog} (from the next event)")]
    internal static partial void PolicyChanged(ILogger logger, string deviceId, string onPanic, string onWatchdog);

    [LoggerMessage(EventId = 6043, Level = LogLevel.Error, Message = "Handling an event of {DeviceId} failed unexpectedly")]
    internal static partial void HandlerFailed(ILogger logger, Exception exception, string deviceId);

    [LoggerMessage(EventId = 6044, Level = LogLevel.Warning, Message = "An EventHandled subscriber threw for {DeviceId}")]
    internal static partial void SubscriberFailed(ILogger logger, Exception exception, string deviceId);

    internal static void Event(ILogger logger, WatchdogEvent evt, string action)
    {
        switch (evt)
        {
            case GuestPanickedEvent panic:
                GuestPanicked(logger, evt.DeviceId, evt.VcpuId, evt.Sequence, panic.Message, action);
                break;
            case WatchdogExpiredEvent expired:
                WatchdogExpired(logger, evt.DeviceId, expired.Timeout.TotalMilliseconds, evt.Sequence, action);
                break;
            case GuestCrashLoadedEvent crash:
                CrashLoaded(logger, evt.DeviceId, evt.VcpuId, evt.Sequence, crash.Message);
                break;
            case WatchdogPretimeoutEvent pre:
                Pretimeout(logger, evt.DeviceId, pre.TimeLeft.TotalMilliseconds, evt.Sequence);
                break;
            case GuestShutdownEvent:
                GuestShutdown(logger, evt.DeviceId, evt.Sequence);
                break;
            case VcpuStalledEvent stalled:
                VcpuStalled(logger, evt.DeviceId, stalled.Vcpu, stalled.StalledFor.TotalMilliseconds, evt.Sequence, stalled.SecondStage.TotalMilliseconds);
                break;
            case VcpuRecoveredEvent recovered:
                VcpuRecovered(logger, evt.DeviceId, recovered.Vcpu, recovered.SinceStall.TotalMilliseconds, evt.Sequence);
                break;
            case VcpuStallExpiredEvent expired:
                VcpuStallExpired(logger, evt.DeviceId, expired.Vcpu, expired.SinceStall.TotalMilliseconds, evt.Sequence, action);
                break;
            default:
                if (logger.IsEnabled(LogLevel.Information))
                {
#pragma warning disable CA1873 // guarded by IsEnabled just above; NameOf is a switch over constants
                    OtherEvent(logger, evt.DeviceId, QmpEvents.NameOf(evt.Kind), evt.Sequence);
#pragma warning restore CA1873
                }

                break;
        }
    }
}
