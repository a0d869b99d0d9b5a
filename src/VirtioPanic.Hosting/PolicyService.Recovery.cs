using System.Collections.Immutable;
using VirtioPanic.Hosting.Journal;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Hosting;

// Design: after a restart, a decision an earlier run journaled but did not carry out is carried out
// once, or reported, never carried out twice.
//
// The journal says what was decided (the decision record), for which VM state ("vm":{"running"},
// from the VM control's last report, IVmRunStateSource), whether a VM-control call had started
// (the attempt record, written before the first call) and whether it finished (the outcome). At
// start, EventJournal.Open carries each device's latest decision that has a VM state and no attempt
// into this run as a "recover" record (pending here); the others are reported only (a call may have
// been made, or nothing says what state the VM was in). When that device is attached and the
// service runs, RecoverAsync waits until the VMM answers query-status (bounded by RecoveryTimeout),
// then, under the device's gate:
//   - the VM is not in the state the decision was made for (running vs stopped), or the device has
//     had events handled since this process started (the guest moved on; acting as well could act
//     twice, once on the new event and once on the old decision): the recover record gets an
//     outcome "not-acted" with the reason, and the event is logged as not carried out;
//   - the decision had deferred its action (a panic grace window, a crash kernel's deadline): the
//     deadline is armed again at its original due time (at once if past), so the ordinary deadline
//     path acts (or a guest reset cancels it) and settles the recover record;
//   - otherwise the attempt is journaled, the decision's calls are made (with fallbacks) and the
//     outcome closes the recover record.
// A crash at any point leaves the recover record pending: without its attempt it is carried out at
// the next start, with it reported. What the comparison cannot see: a VM that was reset, or paused
// and resumed, while this process was down is "running" as before.
//
// Staged escalations (PolicyService.Escalation.cs) follow the same rules. After each step's calls
// (before its outcome) the device's escalation is journaled as an "escalation" record: plan, step
// done, next action, the next step's due time (absolute), the vCPUs of a stall escalation, and the
// VM's run state the next step is planned for (as the VM control knows it, or as the step's own
// pause or resume left it). It stays pending (a rotation carries it) until a later record of the
// device settles it ("settles-escalation"): the next step's decision, which settles it before its
// attempt, so a restart never resumes a step that may have run; a cancellation; a replacement; the
// last step. At start EventJournal.Open carries each device's latest one into this run (a new
// record naming the old), and ResumeAsync waits for query-status as above, then, under the gate:
//   - no VM state journaled, no answer, the VM not in that state, events handled since the start,
//     an escalation already running here, or a record that does not rebuild into a valid plan
//     (PolicyEngine.Resume: VirtioPanicOptionsValidator's rules, step and next action consistent):
//     an outcome "not-acted" with the reason closes the carried record, logged (6066) and reported;
//   - otherwise the escalation is restored into the device's state and its next step armed at the
//     original due time (never later than that step's own delay from now; run at once if past).
//     The step runs through OnEscalationDueAsync as if nothing happened: a re-armed watchdog, a
//     guest reset, RESET, continue or a panic cancel it as they always do.
// A step whose decision is journaled but has no outcome is a decision like any other: without
// its attempt the recovery above carries it out (in its kind's vocabulary, without fallback when
// steps follow) and the escalation then goes on from it, the next step its own delay later (at
// once if it failed), since carrying out is what the recovery rule does with such a decision;
// with its attempt it is reported and the escalation stops there, since reporting and doing
// nothing more is what the rule does with a decision that may have been carried out (we cannot
// know whether the step happened or when it finished).
public sealed partial class PolicyService
{
    private static readonly TimeSpan s_recoveryPoll = TimeSpan.FromSeconds(1);

    // Guarded by _lifecycle: the recover records of this run already taken up (each once per run),
    // the token that stops their tasks, and the tasks (awaited at stop).
    private readonly HashSet<long> _recoveriesClaimed = [];
    private readonly List<Task> _recoveryTasks = [];
    private CancellationTokenSource? _recoveryStop;

    // Tests: completes when every recovery started so far has finished (carried out, re-armed or reported).
    internal Task WhenRecoveredAsync()
    {
        lock (_lifecycle)
        {
            return Task.WhenAll(_recoveryTasks);
        }
    }

    // Under _lifecycle, as the device's pump starts: take up the decisions the journal carried for it.
    private void StartRecoveryUnsynchronized(DeviceEntry entry)
    {
        if (Volatile.Read(ref _recovery) is not { } report || (report.Recoveries.Count == 0 && report.Escalations.Count == 0))
        {
            return;
        }

        _recoveryStop ??= new CancellationTokenSource();
        CancellationToken stop = _recoveryStop.Token;
        foreach ((UnactedJournalEntry pending, long recoverId) in report.Recoveries)
        {
            if (string.Equals(pending.DeviceId, entry.Id, StringComparison.Ordinal) && _recoveriesClaimed.Add(recoverId))
            {
                _recoveryTasks.Add(Task.Run(() => RecoverAsync(entry, state => ResolveAsync(entry, pending, recoverId, state), stop), CancellationToken.None));
            }
        }

        foreach ((JournaledEscalation escalation, long carriedId) in report.Escalations)
        {
            if (string.Equals(escalation.DeviceId, entry.Id, StringComparison.Ordinal) && _recoveriesClaimed.Add(carriedId))
            {
                _recoveryTasks.Add(Task.Run(() => RecoverAsync(entry, state => ResolveEscalationAsync(entry, escalation, carriedId, state), stop), CancellationToken.None));
            }
        }
    }

    // At stop, under no lock: the recoveries still waiting stop (their records stay pending for the next start).
    private async Task StopRecoveriesAsync()
    {
        Task[] tasks;
        CancellationTokenSource? stop;
        lock (_lifecycle)
        {
            tasks = [.. _recoveryTasks];
            _recoveryTasks.Clear();
            stop = _recoveryStop;
            _recoveryStop = null;
        }

        if (stop is null)
        {
            return;
        }

        await stop.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(tasks).ConfigureAwait(false);
        stop.Dispose();
    }

    // A carried record's task (a decision to carry out, an escalation to resume): the VM's run
    // state once the VMM answers, then 'resolve' under the device's gate. Stopping the service or
    // detaching the device leaves the record pending for the next start.
    private async Task RecoverAsync(DeviceEntry entry, Func<VmRunState?, Task> resolve, CancellationToken stop)
    {
        try
        {
            VmRunState? state = await WaitForRunStateAsync(entry.Vm as IVmRunStateSource, stop).ConfigureAwait(false);
            await entry.Gate.WaitAsync(stop).ConfigureAwait(false);
            try
            {
                if (entry.Detached)
                {
                    return;
                }

                await resolve(state).ConfigureAwait(false);
            }
            finally
            {
                entry.Gate.Release();
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // The service stops: the record stays pending.
        }
        catch (Exception ex)
        {
            VirtioPanicLog.HandlerFailed(_logger, ex, entry.Id);
        }
    }

    // Under entry.Gate: restore the escalation and arm its next step at its original due time (run
    // it now if that has passed), or report it. The step then runs through the ordinary path
    // (OnEscalationDueAsync), whose decision settles the carried record.
    private async Task ResolveEscalationAsync(DeviceEntry entry, JournaledEscalation journaled, long carriedId, VmRunState? state)
    {
        DateTimeOffset now = _time.GetUtcNow();
        string kind = PolicyEngine.KindName(journaled.Kind);
        string? reason = state switch
        {
            _ when journaled.VmRunning is null => "the journal does not say what state the VM was in when the step was planned",
            null when entry.Vm is not IVmRunStateSource => "the VM control cannot report the VM's run state",
            null => $"the VMM did not answer query-status within {_options.RecoveryTimeout}",
            { } current when current.Running != journaled.VmRunning => $"the VM is {current.Status} now; the step was planned for a {(journaled.VmRunning == true ? "running" : "stopped")} VM",
            _ when entry.EventsHandled > 0 => $"the device reported {entry.EventsHandled} event(s) since this process started: the guest is not where it was",
            _ when entry.State.Escalation is { } running => $"a {PolicyEngine.KindName(running.Kind)} escalation is in progress in this run",
            _ => null,
        };
        Escalation? escalation = null;
        if (reason is null)
        {
            escalation = PolicyEngine.Resume(journaled.Kind, journaled.Plan, journaled.TriggerSequence, journaled.Step, journaled.StepCount, journaled.NextAction, journaled.Due, journaled.Vcpus, now, out reason);
        }

        if (escalation is null)
        {
            reason ??= "the escalation could not be rebuilt";
            VirtioPanicLog.EscalationNotResumed(_logger, entry.Id, kind, journaled.Plan, journaled.Step, journaled.StepCount, journaled.NextAction, reason);
            bool closed = await _journal.TryAppendOutcomeAsync(_journal.Current, carriedId, entry.Id, journaled.TriggerSequence, "not-acted", [], note: reason).ConfigureAwait(false);
            Publish(entry, new HandledEvent
            {
                DeviceId = entry.Id,
                Sequence = journaled.TriggerSequence,
                Name = "RECOVERY",
                PolicyAction = journaled.NextAction,
                Steps = [],
                Note = $"the {kind} escalation '{journaled.Plan}' was not resumed after a restart: {reason}",
                ManagementJson = ManagementJson("RECOVERY", entry.Id, journaled.TriggerSequence, journaled.NextAction),
                HandledAt = now,
                Journaled = closed,
            });
            return;
        }

        VirtioPanicLog.EscalationResumed(_logger, entry.Id, kind, escalation.Plan, escalation.Done, escalation.StepCount, escalation.Next.Action.Name, escalation.Due, state!.Value.Status);
        entry.State = entry.State with { Escalation = escalation };
        entry.EscalationBy = _journal.Current is null ? 0 : carriedId;
        if (escalation.Due <= now)
        {
            await RunEscalationStepAsync(entry).ConfigureAwait(false);
        }
        else
        {
            RescheduleEscalation(entry);
        }
    }

    // query-status until the VMM answers or RecoveryTimeout passes; null when it never did (or the VM control cannot say).
    private async Task<VmRunState?> WaitForRunStateAsync(IVmRunStateSource? source, CancellationToken stop)
    {
        if (source is null)
        {
            return null;
        }

        DateTimeOffset giveUp = _time.GetUtcNow() + _options.RecoveryTimeout;
        while (true)
        {
            if (await source.QueryRunStateAsync(stop).ConfigureAwait(false) is { } state)
            {
                return state;
            }

            if (_time.GetUtcNow() >= giveUp)
            {
                return null;
            }

            await Task.Delay(s_recoveryPoll, _time, stop).ConfigureAwait(false);
        }
    }

    // Under entry.Gate: carry the decision out, arm its deadline again, or report it.
    private async Task ResolveAsync(DeviceEntry entry, UnactedJournalEntry pending, long recoverId, VmRunState? state)
    {
        EventJournal? journal = _journal.Current;
        string wanted = pending.VmRunning == true ? "running" : "stopped";
        PolicyDecision? decision = null;
        string? reason = state switch
        {
            null when entry.Vm is not IVmRunStateSource => "the VM control cannot report the VM's run state",
            null => $"the VMM did not answer query-status within {_options.RecoveryTimeout}",
            { } now when now.Running != pending.VmRunning => $"the VM is {now.Status} now; the decision was made for a {wanted} VM",
            _ when entry.EventsHandled > 0 => $"the device reported {entry.EventsHandled} event(s) since this process started, after the decision was made: the guest is not where it was",
            _ when pending.DeferredUntil is not null => null,
            _ => TryRebuild(entry, pending, out decision),
        };
        if (reason is not null)
        {
            VirtioPanicLog.RecoveryNotActed(_logger, entry.Id, pending.PolicyAction, pending.Name, pending.Sequence, reason);
            bool closed = await _journal.TryAppendOutcomeAsync(journal, recoverId, entry.Id, pending.Sequence, "not-acted", [], note: reason).ConfigureAwait(false);
            Publish(entry, Handled(entry, pending, [], "not carried out after a restart: " + reason, closed));
            return;
        }

        string status = state!.Value.Status;
        if (pending.DeferredUntil is DateTimeOffset journaledDue)
        {
            // The journal is untrusted: never wait longer than the policy's own window from now.
            TimeSpan window = pending.DeferredKind == PendingDeadlineKind.PanicGrace ? entry.Policy.PanicGracePeriod : entry.Policy.CrashKernelDeadline;
            DateTimeOffset latest = _time.GetUtcNow() + window;
            DateTimeOffset due = journaledDue < latest ? journaledDue : latest;
            // The ordinary deadline path acts when it is due (or a guest reset cancels it) and settles the recover record.
            VirtioPanicLog.RecoveryRearmed(_logger, entry.Id, pending.PolicyAction, pending.Name, pending.Sequence, due, status);
            entry.State = entry.State with
            {
                Condition = pending.DeferredKind == PendingDeadlineKind.PanicGrace ? GuestCondition.Panicked : GuestCondition.CrashKernel,
                Deadline = new PendingDeadline(pending.DeferredKind, due, pending.Sequence),
            };
            entry.DeferredBy = journal is null ? 0 : recoverId;
            RescheduleDeadline(entry);
            return;
        }

        VirtioPanicLog.RecoveryActing(_logger, entry.Id, pending.PolicyAction, pending.Name, pending.Sequence, status);
        _ = await _journal.TryAppendAttemptAsync(journal, recoverId, entry.Id, decision!.Steps[0].Operation).ConfigureAwait(false);
        IReadOnlyList<ActionOutcome> outcomes = await _actions.ExecuteAsync(entry, decision, pending.Sequence, trigger: null).ConfigureAwait(false);
        PendingDeadline? before = entry.State.Deadline;
        entry.State = PolicyEngine.AfterExecution(entry.State, outcomes);
        await ContinueEscalationAsync(journal, entry, pending, outcomes).ConfigureAwait(false);
        long settles = 0;
        if (!Equals(before, entry.State.Deadline))
        {
            settles = entry.DeferredBy;
            entry.DeferredBy = 0;
            RescheduleDeadline(entry);
        }

        HandledEvent handled = Handled(entry, pending, outcomes, "carried out after a restart", journaled: true);
        bool written = await _journal.TryAppendOutcomeAsync(journal, recoverId, entry.Id, pending.Sequence, handled.Outcome, outcomes, settles).ConfigureAwait(false);
        Publish(entry, handled with { Journaled = written });
    }

    // Under entry.Gate, after a recovered decision that was a step of an escalation with steps
    // left was carried out: the escalation goes on from it, as AfterStep would have (the next step
    // its own delay from now, at once when this one failed), journaled as after any step. Nothing
    // when the record names no such escalation, or one that does not check out (logged), or an
    // escalation already runs in this run.
    private async Task ContinueEscalationAsync(EventJournal? journal, DeviceEntry entry, UnactedJournalEntry pending, IReadOnlyList<ActionOutcome> outcomes)
    {
        if (pending.EscalationStep is not { } mark || mark.Step >= mark.StepCount || entry.State.Escalation is not null)
        {
            return;
        }

        DateTimeOffset now = _time.GetUtcNow();
        Escalation? escalation = PolicyEngine.Resume(mark.Kind, mark.Plan, mark.TriggerSequence, mark.Step, mark.StepCount, mark.NextAction, DateTimeOffset.MaxValue, mark.Vcpus, now, out string? error);
        if (escalation is null)
        {
            VirtioPanicLog.EscalationNotResumed(_logger, entry.Id, PolicyEngine.KindName(mark.Kind), mark.Plan, mark.Step, mark.StepCount, mark.NextAction, error ?? "the escalation could not be rebuilt");
            return;
        }

        if (outcomes.Count > 0 && !outcomes[^1].Succeeded)
        {
            escalation = escalation with { Due = now };
        }

        entry.State = entry.State with { Escalation = escalation };
        VirtioPanicLog.EscalationResumed(_logger, entry.Id, PolicyEngine.KindName(mark.Kind), escalation.Plan, escalation.Done, escalation.StepCount, escalation.Next.Action.Name, escalation.Due, "as the recovered step left it");
        await JournalEscalationAsync(journal, entry, escalation, outcomes, settles: 0).ConfigureAwait(false);
        RescheduleEscalation(entry);
    }

    // The calls the decision made, from its type, event name and action (as PolicyEngine plans
    // them; for a step of an escalation, in the vocabulary of its kind); null, or why it cannot be carried out.
    private static string? TryRebuild(DeviceEntry entry, UnactedJournalEntry pending, out PolicyDecision? decision)
    {
        decision = null;
        DecidedAction action;
        ImmutableArray<PlannedStep> steps;
        JournaledEscalation? mark = pending.EscalationStep;
        if (mark is not null && pending.RecordType is "event" or "step" or "deadline")
        {
            if (mark.Kind == EscalationKind.Panic && PolicyNames.TryParse(pending.PolicyAction, out PanicAction panicStep))
            {
                action = DecidedAction.Panic(panicStep);
                steps = PolicyEngine.PanicSteps(panicStep);
            }
            else if (mark.Kind != EscalationKind.Panic && PolicyNames.TryParse(pending.PolicyAction, out WatchdogAction watchdogStep))
            {
                action = DecidedAction.Watchdog(watchdogStep);
                steps = PolicyEngine.WatchdogSteps(watchdogStep);
            }
            else
            {
                return $"the journal's action '{pending.PolicyAction}' is not a {PolicyEngine.KindName(mark.Kind)} escalation step this version carries out";
            }

            if (steps.IsEmpty)
            {
                return "nothing to carry out";
            }

            // A step with steps after it takes no fallback (PolicyEngine.Begin, OnEscalationDue).
            decision = new PolicyDecision { State = entry.State, Action = action, Steps = steps, Note = "carried out after a restart", Fallbacks = mark.Step >= mark.StepCount };
            return null;
        }

        if (pending.RecordType == "continue")
        {
            action = DecidedAction.Continue;
            steps = [new PlannedStep(VmOperation.Resume)];
        }
        else if (pending.Name == "WATCHDOG" && PolicyNames.TryParse(pending.PolicyAction, out WatchdogAction watchdog))
        {
            action = DecidedAction.Watchdog(watchdog);
            steps = PolicyEngine.WatchdogSteps(watchdog);
        }
        else if (pending.Name != "WATCHDOG" && PolicyNames.TryParse(pending.PolicyAction, out PanicAction panic))
        {
            action = DecidedAction.Panic(panic);
            steps = PolicyEngine.PanicSteps(panic);
        }
        else
        {
            return $"the journal's action '{pending.PolicyAction}' on {pending.Name} is not one this version carries out";
        }

        if (steps.IsEmpty)
        {
            return "nothing to carry out";
        }

        decision = new PolicyDecision { State = entry.State, Action = action, Steps = steps, Note = "carried out after a restart" };
        return null;
    }

    // What the recovery did, reported as every handled item is.
    private HandledEvent Handled(DeviceEntry entry, UnactedJournalEntry pending, IReadOnlyList<ActionOutcome> outcomes, string note, bool journaled) => new()
    {
        DeviceId = entry.Id,
        Sequence = pending.Sequence,
        Name = "RECOVERY",
        PolicyAction = pending.PolicyAction,
        Steps = outcomes,
        Note = note,
        ManagementJson = ManagementJson("RECOVERY", entry.Id, pending.Sequence, pending.PolicyAction),
        HandledAt = _time.GetUtcNow(),
        Journaled = journaled,
    };

    // Under entry.Gate.
    private void Publish(DeviceEntry entry, HandledEvent handled)
    {
        entry.Record(handled);
        try
        {
            EventHandled?.Invoke(this, handled);
        }
        catch (Exception ex)
        {
            VirtioPanicLog.SubscriberFailed(_logger, ex, entry.Id);
        }
    }
}
