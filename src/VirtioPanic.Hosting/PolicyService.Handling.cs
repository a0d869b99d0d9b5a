using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Journal;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Hosting;

// The handling pipeline, for every event, deadline and management request of a device, under its
// gate: decide (PolicyEngine, pure), journal the decision, update the state and the deadline timer,
// act (ActionRunner, with fallbacks), journal the outcome, record it and raise EventHandled.
public sealed partial class PolicyService
{
    // Tests and benchmarks: completes once everything the device reported so far is handled (see DevicePump.WhenIdleAsync).
    internal Task WhenIdleAsync(string deviceId) => Entry(deviceId).Pump?.WhenIdleAsync() ?? Task.CompletedTask;

    // The pump's handler (DevicePump), under entry.Gate: one device event. Never throws.
    private async Task HandleEventAsync(DeviceEntry entry, WatchdogEvent evt)
    {
        try
        {
            DateTimeOffset now = _time.GetUtcNow();
            PolicyDecision decision = PolicyEngine.OnEvent(entry.State, entry.Policy, evt, now);
            _metrics.Event(evt.DeviceId, evt.Kind);
            if (_logs.ShouldLog(entry, LogLevel.Error))
            {
                VirtioPanicLog.Event(_logger, evt, decision.Action.Name);
            }

            await ApplyAsync(entry, decision, "event", QmpEvents.NameOf(evt.Kind), evt.Sequence, evt).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            if (_logs.ShouldLog(entry, LogLevel.Error))
            {
                VirtioPanicLog.HandlerFailed(_logger, ex, entry.Id);
            }
        }
    }

    private async Task<HandledEvent> RequestAsync(DeviceEntry entry, string type, string name, Func<DevicePolicyState, PolicyDecision> decide, CancellationToken cancellationToken)
    {
        await entry.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            PolicyDecision decision = decide(entry.State);
            return await ApplyAsync(entry, decision, type, name, 0, trigger: null).ConfigureAwait(false);
        }
        finally
        {
            entry.Gate.Release();
        }
    }

    private async Task OnDeadlineAsync(DeviceEntry entry)
    {
        await entry.Gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (entry.Detached)
            {
                return;
            }

            PendingDeadline? deadline = entry.State.Deadline;
            PolicyDecision decision = PolicyEngine.OnDeadline(entry.State, entry.Policy, _time.GetUtcNow());
            if (decision.Action.Kind == DecidedActionKind.Ignored || deadline is null)
            {
                // A timer may fire before its due time by the wall clock the deadline is kept in
                // (millisecond truncation, a clock slewed meanwhile): point it at the due time
                // again, or the deadline would never fire. Without a deadline this disposes it.
                RescheduleDeadline(entry);
                return;
            }

            await ApplyAsync(entry, decision, "deadline", "DEADLINE", deadline.TriggerSequence, trigger: null).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            if (_logs.ShouldLog(entry, LogLevel.Error))
            {
                VirtioPanicLog.HandlerFailed(_logger, ex, entry.Id);
            }
        }
        finally
        {
            entry.Gate.Release();
        }
    }

    // Runs under entry.Gate.
    // cause: for an escalation's later step, the event that started it (its calls' VmActionContext.Trigger).
    private async Task<HandledEvent> ApplyAsync(DeviceEntry entry, PolicyDecision decision, string type, string name, long sequence, WatchdogEvent? trigger, WatchdogEvent? cause = null)
    {
        bool acting = !decision.Steps.IsEmpty;
        if (decision.Note is not null)
        {
            if (decision.StormTripped)
            {
                _metrics.StormTrip();
                if (_logs.ShouldLog(entry, LogLevel.Error))
                {
                    VirtioPanicLog.StormGuardTripped(_logger, entry.Id, decision.Note);
                }
            }
            else if (_logs.ShouldLog(entry, LogLevel.Warning))
            {
                VirtioPanicLog.PolicyNote(_logger, entry.Id, decision.Note);
            }
        }

        // 1. Journal the decision before acting on it, with the VM's run state it was made for and
        // the deadline it arms or settles (what a restart needs to carry it out or report it).
        EventJournal? journal = _journal.Current;
        long id = journal?.NextId() ?? 0;
        PendingDeadline? previous = entry.State.Deadline;
        Escalation? previousEscalation = entry.State.Escalation;
        bool rearmed = !Equals(previous, decision.State.Deadline);
        DecisionFacts facts = Facts(entry, decision, rearmed);

        // The escalation record this decision advances, cancels or replaces is settled by the
        // decision itself when it acts (before its attempt: a restart must not resume the step this
        // decision may have carried out) or ends the escalation; a decision that only changes the
        // escalation (a vCPU joins) settles it with the escalation record that follows.
        long settleEscalation = 0;
        if (previousEscalation is not null && !ReferenceEquals(previousEscalation, decision.State.Escalation))
        {
            settleEscalation = entry.EscalationBy;
            entry.EscalationBy = 0;
            if (acting || decision.State.Escalation is null)
            {
                facts = facts with { SettlesEscalation = settleEscalation };
                settleEscalation = 0;
            }
        }

        bool journaled = await _journal.TryAppendDecisionAsync(journal, id, type, entry.Id, sequence, name, decision.Action, acting, decision.Note, trigger, facts, EscalationMembers(decision)).ConfigureAwait(false);

        // 2. The new state and its deadline.
        entry.State = decision.State;
        if (rearmed)
        {
            entry.DeferredBy = decision.State.Deadline is not null && journaled ? id : 0;
            RescheduleDeadline(entry);
        }

        // 3. Act, with fallbacks; the attempt is journaled first, so a restart never repeats a call that may have been made.
        IReadOnlyList<ActionOutcome> outcomes = [];
        if (acting)
        {
            _ = await _journal.TryAppendAttemptAsync(journal, id, entry.Id, decision.Steps[0].Operation).ConfigureAwait(false);
            outcomes = await _actions.ExecuteAsync(entry, decision, sequence, trigger, cause).ConfigureAwait(false);
        }

        entry.State = PolicyEngine.AfterStep(PolicyEngine.AfterExecution(entry.State, outcomes), decision, outcomes, _time.GetUtcNow());
        long settledByOutcome = 0;
        if (!Equals(decision.State.Deadline, entry.State.Deadline))
        {
            settledByOutcome = entry.DeferredBy;
            entry.DeferredBy = 0;
            RescheduleDeadline(entry);
        }

        if (!ReferenceEquals(previousEscalation, entry.State.Escalation))
        {
            RescheduleEscalation(entry);

            // The escalation after this step, with the next step's due time, before the outcome:
            // from here on a restart resumes it (PolicyService.Recovery.cs).
            if (entry.State.Escalation is { } after)
            {
                await JournalEscalationAsync(journal, entry, after, outcomes, settleEscalation).ConfigureAwait(false);
            }
        }

        // 4. Journal the outcome: only now does the event count as handled.
        var handled = new HandledEvent
        {
            DeviceId = entry.Id,
            Sequence = sequence,
            Name = name,
            Event = trigger,
            PolicyAction = decision.Action.Name,
            Steps = outcomes,
            Note = decision.Note,
            ManagementJson = trigger is null ? ManagementJson(name, entry.Id, sequence, decision.Action.Name) : null,
            HandledAt = _time.GetUtcNow(),
            Journaled = journaled,
        };
        if (acting)
        {
            string outcome = handled.Outcome;
            bool closed = await _journal.TryAppendOutcomeAsync(journal, id, entry.Id, sequence, outcome, outcomes, settledByOutcome).ConfigureAwait(false);
            handled = handled with { Journaled = journaled & closed };
        }

        CountEscalation(decision, handled.Outcome);
        entry.Record(handled);
        try
        {
            EventHandled?.Invoke(this, handled);
        }
        catch (Exception ex)
        {
            if (_logs.ShouldLog(entry, LogLevel.Warning))
            {
                VirtioPanicLog.SubscriberFailed(_logger, ex, entry.Id);
            }
        }

        // 5. An escalation step due at once (the step before it failed) runs now, still under the gate.
        if (entry.State.Escalation is { } escalation && escalation.Due <= _time.GetUtcNow() && !entry.Detached)
        {
            await RunEscalationStepAsync(entry).ConfigureAwait(false);
        }

        return handled;
    }

    // What the decision record carries for a restart: the VM's run state as the VM control last
    // knew it (no query on the decision's path), the deadline the decision arms with the action due
    // then, and the deferred decision it settles (the deadline it fires, replaces or cancels).
    private static DecisionFacts Facts(DeviceEntry entry, PolicyDecision decision, bool rearmed)
    {
        bool? running = (entry.Vm as IVmRunStateSource)?.VmRunning;
        PendingDeadline? deferred = rearmed ? decision.State.Deadline : null;
        string? deferredAction = deferred is null
            ? null
            : PolicyNames.Of(deferred.Kind == PendingDeadlineKind.PanicGrace ? PolicyEngine.EffectivePanicAction(decision.State, entry.Policy) : entry.Policy.OnCrashKernelTimeout);
        return new DecisionFacts(running, deferred, deferredAction, rearmed ? entry.DeferredBy : 0);
    }

    // Runs under entry.Gate: points the device's one deadline timer at State.Deadline.
    private void RescheduleDeadline(DeviceEntry entry)
    {
        entry.DeadlineTimer?.Dispose();
        entry.DeadlineTimer = null;
        if (entry.State.Deadline is not { } deadline || entry.Detached)
        {
            return;
        }

        TimeSpan due = deadline.Due - _time.GetUtcNow();
        entry.DeadlineTimer = _time.CreateTimer(
            static state =>
            {
                var (service, target) = ((PolicyService, DeviceEntry))state!;
                _ = service.OnDeadlineAsync(target);
            },
            (this, entry),
            due > TimeSpan.Zero ? due : TimeSpan.FromMilliseconds(1),
            Timeout.InfiniteTimeSpan);
    }

    // A deadline, management request or recovery has no device event, and QEMU has no event of that
    // name: it is our own VIRTIO_WDT_<NAME> event, QMP-shaped (event, timestamp) with no data, and
    // our members under virtio-wdt, like QmpEvents' own events (the schema rule).
    private string ManagementJson(string name, string deviceId, long sequence, string action) => System.Text.Encoding.UTF8.GetString(
        EventJournal.Line(w =>
        {
            long microseconds = _time.GetUtcNow().ToUnixTimeMilliseconds() * 1000;
            w.WriteStartObject();
            w.WriteString("event", "VIRTIO_WDT_" + name);
            w.WriteStartObject("timestamp");
            w.WriteNumber("seconds", microseconds / 1_000_000);
            w.WriteNumber("microseconds", microseconds % 1_000_000);
            w.WriteEndObject();
            w.WriteStartObject("virtio-wdt");
            w.WriteString("device", deviceId);
            w.WriteNumber("sequence", sequence);
            w.WriteString("policy", action);
            w.WriteEndObject();
            w.WriteEndObject();
        }).AsSpan()[..^1]);
}
