using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Journal;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Hosting;

// The policy service's side of the journal: opening it at start (or running degraded without
// one), the start-up recovery report, journal on acceptance, the decision and outcome records with
// their durability, and the degraded state the status query and the gauge show.
internal sealed class PolicyJournal
{
    // The operations' names, made once: the attempt record is on every acting decision's path.
    private static readonly string[] s_operationNames = [.. Enum.GetValues<VmOperation>().Select(PolicyNames.Of)];

    private readonly VirtioPanicOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly VirtioPanicMetrics _metrics;

    // Written under the service's lifecycle lock (Open, Close), read lock-free (Volatile) by the
    // acceptance path, the handlers and the status query.
    private EventJournal? _journal;

    // Why the last write failed; null while writes succeed. Interlocked by the journal's writer, Volatile readers.
    private string? _error;

    internal PolicyJournal(VirtioPanicOptions options, TimeProvider time, ILogger logger, VirtioPanicMetrics metrics)
    {
        _options = options;
        _time = time;
        _logger = logger;
        _metrics = metrics;
    }

    // The open journal (null before start, after stop, or when it could not be opened).
    internal EventJournal? Current => Volatile.Read(ref _journal);

    internal string? Error => Volatile.Read(ref _error);

    // Under the service's lifecycle lock. Start never fails because of the journal: without one the service runs degraded.
    internal JournalRecoveryReport Open()
    {
        string run = Guid.NewGuid().ToString("N")[..12];
        var settings = JournalSettings.From(_options);
        JournalRecoveryReport report;
        try
        {
            Volatile.Write(ref _journal, EventJournal.Open(settings, run, _time, OnWrite, ex => VirtioPanicLog.JournalRotationFailed(_logger, ex, settings.Path), out report));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or System.Security.SecurityException)
        {
            report = new JournalRecoveryReport { Path = settings.Path };
            OnWrite(ex);
        }

        LogRecovery(report, run);
        return report;
    }

    // Under the service's lifecycle lock: writes what was queued, fsyncs, closes.
    internal void Close()
    {
        Volatile.Read(ref _journal)?.Dispose();
        Volatile.Write(ref _journal, null);
    }

    // The device's report-accepted observer, on the thread that made the report (a vCPU, or the
    // eventq worker before it completes the guest's buffer): the report is journaled (group
    // commit) before the guest learns it was accepted, so a report the guest saw accepted is on
    // record even if this process dies before the pump reads it from the device's channel.
    internal void OnReportAccepted(GuestReportEvent report)
    {
        if (Current is not { } journal)
        {
            return;
        }

        long id = journal.NextId();
        byte[] line = JournalRecords.Accepted(journal.Run, id, _time.GetUtcNow(), report.DeviceId, report.Sequence, QmpEvents.NameOf(report.Kind));

        // FlushAfterAction: written to the operating system only (survives the process, not the host).
        journal.Append(new JournalItem(line, _options.JournalDurability == JournalDurability.FlushBeforeAction, JournalMarks.Accepts, id, report.DeviceId, report.Sequence));
    }

    // The decision, before it is acted on: it resolves the device's accepted records up to its
    // sequence; an acting one stays open until its outcome. Fsynced when not acting, or when acting
    // under FlushBeforeAction. False without a journal (before start, or degraded: reported once).
    // Not async: the journal's ValueTask is handed on as it is (no state machine per record).
    // A decision that arms a deadline (facts.Deferred) stays open too, until a later record settles it.
    internal ValueTask<bool> TryAppendDecisionAsync(EventJournal? journal, long id, string type, string deviceId, long sequence, string name, DecidedAction action, bool acting, string? note, WatchdogEvent? trigger, DecisionFacts facts = default, Action<System.Text.Json.Utf8JsonWriter>? extra = null) =>
        journal is null
            ? ValueTask.FromResult(false)
            : journal.AppendAsync(new JournalItem(
                JournalRecords.Decision(type, journal.Run, id, _time.GetUtcNow(), deviceId, sequence, name, action.Name, acting, note, trigger, facts, extra),
                FlushToDisk: !acting || _options.JournalDurability == JournalDurability.FlushBeforeAction,
                JournalMarks.Decides | (acting || facts.Deferred is not null ? JournalMarks.Opens : JournalMarks.None),
                id,
                deviceId,
                sequence,
                facts.Settles,
                facts.SettlesEscalation));

    // The device's escalation after a step (PolicyService.Escalation.cs): pending until a later
    // record settles it, so a restart resumes it. Fsynced: it is what the restart needs.
    internal ValueTask<bool> TryAppendEscalationAsync(EventJournal? journal, long id, JournaledEscalation escalation, long settlesEscalation) =>
        journal is null
            ? ValueTask.FromResult(false)
            : journal.AppendAsync(new JournalItem(
                JournalRecords.Escalation(journal.Run, id, _time.GetUtcNow(), escalation, settlesEscalation),
                FlushToDisk: true,
                JournalMarks.Opens,
                id,
                escalation.DeviceId,
                escalation.TriggerSequence,
                SettlesEscalation: settlesEscalation));

    // Just before the first VM-control call of acting decision 'id': a restart that finds it
    // without an outcome reports it instead of carrying it out again. Written to the operating
    // system, not fsynced: it guards against a crash of this process (the VMM lives on), and costs
    // the panic path one write, not another fsync.
    internal ValueTask<bool> TryAppendAttemptAsync(EventJournal? journal, long id, string deviceId, VmOperation operation) =>
        journal is null
            ? ValueTask.FromResult(false)
            : journal.AppendAsync(new JournalItem(JournalRecords.Attempt(journal.Run, _time.GetUtcNow(), id, s_operationNames[(int)operation]), FlushToDisk: false, JournalMarks.None, 0, deviceId));

    // The outcome of an acting decision, always fsynced: only now does the event count as handled.
    // 'settles' resolves a deferred decision whose deadline the calls cleared; 'note' says why a recovered decision was not carried out.
    internal ValueTask<bool> TryAppendOutcomeAsync(EventJournal? journal, long id, string deviceId, long sequence, string outcome, IReadOnlyList<ActionOutcome> outcomes, long settles = 0, string? note = null) =>
        journal is null
            ? ValueTask.FromResult(false)
            : journal.AppendAsync(new JournalItem(JournalRecords.Outcome(journal.Run, id, _time.GetUtcNow(), outcome, outcomes, settles, note), FlushToDisk: true, JournalMarks.Closes, id, deviceId, sequence, settles));

    // From the journal's writer, after a batch: null when it was written (only sent after
    // failures), else why not. Logged once per change of state; every failure is counted.
    private void OnWrite(Exception? error)
    {
        string path = JournalSettings.From(_options).Path;
        if (error is null)
        {
            if (Interlocked.Exchange(ref _error, null) is not null)
            {
                VirtioPanicLog.JournalRestored(_logger, path);
            }

            return;
        }

        _metrics.JournalFailure();
        string reason = $"{error.GetType().Name}: {error.Message}";
        if (Interlocked.Exchange(ref _error, reason) is null)
        {
            VirtioPanicLog.JournalDegraded(_logger, error, path, reason);
        }
    }

    private void LogRecovery(JournalRecoveryReport report, string run)
    {
        VirtioPanicLog.JournalOpened(_logger, report.Path, report.Records, run);
        if (report.SkippedBytes > 0)
        {
            VirtioPanicLog.JournalSkipped(_logger, report.Path, report.SkippedBytes);
        }

        if (report.TornTrailingBytes > 0)
        {
            VirtioPanicLog.TornLine(_logger, report.Path, report.TornTrailingBytes);
        }

        if (report.CorruptLines > 0)
        {
            VirtioPanicLog.CorruptLines(_logger, report.Path, report.CorruptLines);
        }

        foreach (UnactedJournalEntry entry in report.UnactedEvents)
        {
            VirtioPanicLog.UnactedEvent(_logger, entry.Name, entry.DeviceId, entry.Sequence, entry.Run, entry.Time, entry.PolicyAction.Length == 0 ? "(accepted, none decided yet)" : entry.Attempted ? entry.PolicyAction + " (a call was under way: not repeated)" : entry.PolicyAction);
        }

        foreach ((UnactedJournalEntry entry, _) in report.Recoveries)
        {
            VirtioPanicLog.RecoveryPending(_logger, entry.DeviceId, entry.PolicyAction, entry.Name, entry.Sequence, entry.Run, entry.VmRunning == true ? "running" : "stopped");
        }

        foreach ((JournaledEscalation escalation, _) in report.Escalations)
        {
            VirtioPanicLog.EscalationPending(_logger, escalation.DeviceId, Policy.PolicyEngine.KindName(escalation.Kind), escalation.Plan, escalation.Step, escalation.StepCount, escalation.NextAction, escalation.Due, escalation.Run);
        }
    }
}
