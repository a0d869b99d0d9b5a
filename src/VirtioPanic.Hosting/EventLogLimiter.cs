using Microsoft.Extensions.Logging;
using VirtioPanic.RateLimiting;

namespace VirtioPanic.Hosting;

// The rate limit of the policy service's per-event log lines, which a guest can trigger: a guest
// can report in a loop (a front end writing panic_events through SET_CONFIG), so per device at most
// DeviceLogBurst lines per window and ProcessLogBurst across all devices. What is suppressed is
// summarized by the next line let through, by the periodic sweep once a flood stopped, and at stop.
internal sealed class EventLogLimiter
{
    private const int DeviceLogBurst = 20;
    private const int ProcessLogBurst = 200;
    private static readonly TimeSpan s_window = TimeSpan.FromSeconds(10);

    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly VirtioPanicMetrics _metrics;
    private readonly LogRateLimiter _process;

    // 1 while some line is suppressed and not yet summarized; Volatile only (a hint for the sweep, orders nothing).
    private int _suppressedSome;

    internal EventLogLimiter(ILogger logger, TimeProvider time, VirtioPanicMetrics metrics)
    {
        _logger = logger;
        _time = time;
        _metrics = metrics;
        _process = new LogRateLimiter(time, ProcessLogBurst, s_window);
    }

    // The limiter of one device's lines (DeviceEntry.Logs).
    internal LogRateLimiter ForDevice() => new(_time, DeviceLogBurst, s_window);

    // Whether a per-event line about this device may be written now; logs the summaries of what was suppressed first.
    internal bool ShouldLog(DeviceEntry entry, LogLevel level)
    {
        if (!_logger.IsEnabled(level))
        {
            return false;
        }

        if (!entry.Logs.TryAcquire(out long deviceSummary))
        {
            Suppressed();
            return false;
        }

        if (!_process.TryAcquire(out long processSummary))
        {
            // The device's own summary goes into the process-wide one.
            _process.AddSuppressed(deviceSummary);
            Suppressed();
            return false;
        }

        if (processSummary > 0)
        {
            VirtioPanicLog.LinesSuppressed(_logger, processSummary, s_window.TotalSeconds);
        }

        if (deviceSummary > 0)
        {
            VirtioPanicLog.DeviceLinesSuppressed(_logger, entry.Id, deviceSummary, s_window.TotalSeconds);
        }

        return true;
    }

    // From the periodic sweep: a flood that stopped still gets its summary once its window is over.
    // The devices are enumerated only when something was suppressed (the sweep runs up to every 10 ms).
    internal void LogSuppressedSummaries(IReadOnlyDictionary<string, DeviceEntry> devices)
    {
        if (Volatile.Read(ref _suppressedSome) == 0)
        {
            return;
        }

        bool pending = false;
        foreach (DeviceEntry entry in devices.Values)
        {
            long count = entry.Logs.TakeSummary();
            if (count > 0)
            {
                if (_process.TryAcquire(out long processSummary))
                {
                    if (processSummary > 0)
                    {
                        VirtioPanicLog.LinesSuppressed(_logger, processSummary, s_window.TotalSeconds);
                    }

                    VirtioPanicLog.DeviceLinesSuppressed(_logger, entry.Id, count, s_window.TotalSeconds);
                }
                else
                {
                    _process.AddSuppressed(count);
                    pending = true;
                }
            }
            else if (entry.Logs.HasSuppressed)
            {
                pending = true;
            }
        }

        long all = _process.TakeSummary();
        if (all > 0)
        {
            VirtioPanicLog.LinesSuppressed(_logger, all, s_window.TotalSeconds);
        }

        if (!pending && !_process.HasSuppressed)
        {
            Volatile.Write(ref _suppressedSome, 0);
        }
    }

    // At stop: whatever is still suppressed is reported now, whatever its window, so a flood
    // just before shutdown does not vanish from the log.
    internal void LogFinalSuppressedSummaries(IEnumerable<DeviceEntry> devices)
    {
        foreach (DeviceEntry entry in devices)
        {
            long count = entry.Logs.TakeSuppressed();
            if (count > 0)
            {
                VirtioPanicLog.DeviceLinesSuppressed(_logger, entry.Id, count, s_window.TotalSeconds);
            }
        }

        long all = _process.TakeSuppressed();
        if (all > 0)
        {
            VirtioPanicLog.LinesSuppressed(_logger, all, s_window.TotalSeconds);
        }

        Volatile.Write(ref _suppressedSome, 0);
    }

    private void Suppressed()
    {
        _metrics.Suppressed();
        Volatile.Write(ref _suppressedSome, 1);
    }
}
