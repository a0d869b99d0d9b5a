using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Journal;

namespace VirtioPanic.Hosting;

// The journal's side of the manager (journal on acceptance, degraded mode) and the rate limit of
// the per-event log lines a guest can trigger.
public sealed partial class PolicyService
{
    // A guest can report in a loop (a front end writing panic_events through SET_CONFIG): per
    // device at most DeviceLogBurst per-event lines per LogWindow, and ProcessLogBurst across all.
    private const int DeviceLogBurst = 20;
    private const int ProcessLogBurst = 200;
    private static readonly TimeSpan s_logWindow = TimeSpan.FromSeconds(10);

    // The device's report-accepted observer, on the thread that made the report (a vCPU, or the
    // eventq worker before it completes the guest's buffer): the report is journaled (group
    // commit) before the guest learns it was accepted, so a report the guest saw accepted is on
    // record even if this process dies before the pump reads it from the device's channel.
    private void OnReportAccepted(GuestReportEvent report)
    {
        if (Volatile.Read(ref _journal) is not { } journal)
        {
            return;
        }

        long id = journal.NextId();
        byte[] line = JournalRecords.Accepted(journal.Run, id, _time.GetUtcNow(), report.DeviceId, report.Sequence, QmpEvents.NameOf(report.Kind));

        // FlushAfterAction: written to the operating system only (survives the process, not the host).
        journal.Append(new JournalItem(line, _options.JournalDurability == JournalDurability.FlushBeforeAction, JournalMarks.Accepts, id, report.DeviceId, report.Sequence));
    }

    // Not an async method: the journal's ValueTask is handed on as it is (no state machine per record).
    private static ValueTask<bool> TryJournalAsync(EventJournal? journal, Func<byte[]> record, bool flushToDisk, JournalMarks marks, long id, string deviceId, long sequence) =>
        journal is null
            ? ValueTask.FromResult(false) // before the service started there is no journal yet; without one (degraded) the failure was reported once
            : journal.AppendAsync(new JournalItem(record(), flushToDisk, marks, id, deviceId, sequence));

    // From the journal's writer, after a batch: null when it was written (only sent after
    // failures), else why not. Logged once per change of state; every failure is counted.
    private void OnJournalWrite(Exception? error)
    {
        string path = JournalSettings.From(_options).Path;
        if (error is null)
        {
            if (Interlocked.Exchange(ref _journalError, null) is not null)
            {
                VirtioPanicLog.JournalRestored(_logger, path);
            }

            return;
        }

        _metrics.JournalFailure();
        string reason = $"{error.GetType().Name}: {error.Message}";
        if (Interlocked.Exchange(ref _journalError, reason) is null)
        {
            VirtioPanicLog.JournalDegraded(_logger, error, path, reason);
        }
    }

    // Whether a per-event line about this device may be written now; logs the summaries of what was suppressed first.
    private bool ShouldLog(DeviceEntry entry, LogLevel level)
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

        if (!_processLogs.TryAcquire(out long processSummary))
        {
            // The device's own summary goes into the process-wide one.
            _processLogs.AddSuppressed(deviceSummary);
            Suppressed();
            return false;
        }

        if (processSummary > 0)
        {
            VirtioPanicLog.LinesSuppressed(_logger, processSummary, s_logWindow.TotalSeconds);
        }

        if (deviceSummary > 0)
        {
            VirtioPanicLog.DeviceLinesSuppressed(_logger, entry.Id, deviceSummary, s_logWindow.TotalSeconds);
        }

        return true;
    }

    private void Suppressed()
    {
        _metrics.Suppressed();
        Volatile.Write(ref _suppressedSome, 1);
    }

    // From the periodic sweep: a flood that stopped still gets its summary once its window is over.
    private void LogSuppressedSummaries()
    {
        if (Volatile.Read(ref _suppressedSome) == 0)
        {
            return;
        }

        bool pending = false;
        foreach (DeviceEntry entry in _devices.Values)
        {
            long count = entry.Logs.TakeSummary();
            if (count > 0)
            {
                if (_processLogs.TryAcquire(out long processSummary))
                {
                    if (processSummary > 0)
                    {
                        VirtioPanicLog.LinesSuppressed(_logger, processSummary, s_logWindow.TotalSeconds);
                    }

                    VirtioPanicLog.DeviceLinesSuppressed(_logger, entry.Id, count, s_logWindow.TotalSeconds);
                }
                else
                {
                    _processLogs.AddSuppressed(count);
                    pending = true;
                }
            }
            else if (entry.Logs.HasSuppressed)
            {
                pending = true;
            }
        }

        long all = _processLogs.TakeSummary();
        if (all > 0)
        {
            VirtioPanicLog.LinesSuppressed(_logger, all, s_logWindow.TotalSeconds);
        }

        if (!pending && !_processLogs.HasSuppressed)
        {
            Volatile.Write(ref _suppressedSome, 0);
        }
    }

    // At stop: whatever is still suppressed is reported now, whatever its window, so a flood
    // just before shutdown does not vanish from the log.
    private void LogFinalSuppressedSummaries()
    {
        foreach (DeviceEntry entry in _devices.Values)
        {
            long count = entry.Logs.TakeSuppressed();
            if (count > 0)
            {
                VirtioPanicLog.DeviceLinesSuppressed(_logger, entry.Id, count, s_logWindow.TotalSeconds);
            }
        }

        long all = _processLogs.TakeSuppressed();
        if (all > 0)
        {
            VirtioPanicLog.LinesSuppressed(_logger, all, s_logWindow.TotalSeconds);
        }

        Volatile.Write(ref _suppressedSome, 0);
    }
}
