using System.Text.Json;
using Microsoft.Extensions.Logging;
using VirtioPanic.Hosting.Journal;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Hosting;

// Staged escalation: the device's one escalation timer (DeviceEntry.EscalationTimer), the later
// steps it runs under the gate (each decided by PolicyEngine.OnEscalationDue, journaled as a
// "step" record, carried out and journaled like any decision), and the escalation members of
// journal records. A step runs at most once: the state advances before its calls are made, and a
// timer that fires for a step already run, cancelled or replaced finds nothing due. After a step
// the escalation is journaled ("escalation" record, JournalEscalationAsync) so that a restart
// resumes it (PolicyService.Recovery.cs); DeviceEntry.EscalationBy is that record's id.
public sealed partial class PolicyService
{
    internal const string EscalationStepName = "ESCALATION_STEP";

    private async Task OnEscalationDueAsync(DeviceEntry entry)
    {
        await entry.Gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!entry.Detached)
            {
                await RunEscalationStepAsync(entry).ConfigureAwait(false);
            }
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

    // Runs under entry.Gate: the next step if it is due (ApplyAsync comes back here while the
    // following one is due at once, at most once per step), else points the timer at it.
    private async Task RunEscalationStepAsync(DeviceEntry entry)
    {
        if (entry.State.Escalation is not { } escalation)
        {
            return;
        }

        // The device's own word on a re-arm: its Armed event may have been dropped under pressure or still be queued.
        bool armed = escalation.Kind == EscalationKind.Watchdog && entry.Device.GetStatus().Armed;
        PolicyDecision decision = PolicyEngine.OnEscalationDue(entry.State, _time.GetUtcNow(), armed);
        if (decision.Action.Kind == DecidedActionKind.Ignored)
        {
            RescheduleEscalation(entry);
            return;
        }

        await ApplyAsync(entry, decision, "step", EscalationStepName, escalation.TriggerSequence, trigger: null, cause: escalation.Trigger).ConfigureAwait(false);
    }

    // Runs under entry.Gate: points the device's escalation timer at State.Escalation's next step.
    private void RescheduleEscalation(DeviceEntry entry)
    {
        entry.EscalationTimer?.Dispose();
        entry.EscalationTimer = null;
        if (entry.State.Escalation is not { } escalation || entry.Detached)
        {
            return;
        }

        TimeSpan due = escalation.Due - _time.GetUtcNow();
        entry.EscalationTimer = _time.CreateTimer(
            static state =>
            {
                var (service, target) = ((PolicyService, DeviceEntry))state!;
                _ = service.OnEscalationDueAsync(target);
            },
            (this, entry),
            due > TimeSpan.Zero ? due : TimeSpan.FromMilliseconds(1),
            Timeout.InfiniteTimeSpan);
    }

    // Runs under entry.Gate: the "escalation" record of State.Escalation (pending until a later
    // decision settles it); 'settles' is the record it replaces, if the decision did not settle it.
    // The VM's run state it is planned for: as the VM control last knew it, or as this step's own
    // pause or resume left it (the control may not have seen the VMM's event yet).
    private async Task JournalEscalationAsync(EventJournal? journal, DeviceEntry entry, Escalation escalation, IReadOnlyList<ActionOutcome> outcomes, long settles)
    {
        if (journal is null)
        {
            return;
        }

        bool? running = (entry.Vm as IVmRunStateSource)?.VmRunning;
        foreach (ActionOutcome outcome in outcomes)
        {
            if (outcome.Succeeded && outcome.Operation is VmOperation.Pause or VmOperation.Resume)
            {
                running = outcome.Operation == VmOperation.Resume;
            }
        }

        long id = journal.NextId();
        var record = new JournaledEscalation
        {
            Run = journal.Run,
            RecordId = id,
            DeviceId = entry.Id,
            Kind = escalation.Kind,
            Plan = escalation.Plan,
            TriggerSequence = escalation.TriggerSequence,
            Step = escalation.Done,
            StepCount = escalation.StepCount,
            NextAction = escalation.Next.Action.Name,
            Due = escalation.Due,
            Vcpus = escalation.Vcpus,
            VmRunning = running,
            Time = _time.GetUtcNow(),
        };
        bool written = await _journal.TryAppendEscalationAsync(journal, id, record, settles).ConfigureAwait(false);
        entry.EscalationBy = written ? id : 0;
    }

    private void CountEscalation(PolicyDecision decision, string outcome)
    {
        if (decision.EscalationStep is { } step)
        {
            _metrics.EscalationStep(step.Kind, decision.Action.Name, outcome);
        }

        if (decision.Cancelled is { } cancelled)
        {
            _metrics.EscalationCancelled(cancelled.Next.Kind, cancelled.Code);
        }
    }

    // The journal members of a decision that starts, carries out or cancels an escalation; null for any other.
    private static Action<Utf8JsonWriter>? EscalationMembers(PolicyDecision decision)
    {
        if (decision.EscalationStep is null && decision.Cancelled is null)
        {
            return null;
        }

        return w =>
        {
            if (decision.EscalationStep is { } step)
            {
                w.WriteStartObject("escalation");
                WriteMark(w, step);
                if (decision.State.Escalation is { } next && next.TriggerSequence == step.TriggerSequence && next.Kind == step.Kind)
                {
                    w.WriteString("next", next.Next.Action.Name);
                    w.WriteNumber("next-after-ms", (long)next.Next.After.TotalMilliseconds);
                    if (!next.Vcpus.IsEmpty)
                    {
                        // What a restart that carries this decision out needs to go on with it (PolicyService.Recovery.cs).
                        w.WriteStartArray("vcpus");
                        foreach (uint vcpu in next.Vcpus)
                        {
                            w.WriteNumberValue(vcpu);
                        }

                        w.WriteEndArray();
                    }
                }

                w.WriteEndObject();
            }

            if (decision.Cancelled is { } cancelled)
            {
                w.WriteStartObject("escalation-cancelled");
                WriteMark(w, cancelled.Next);
                w.WriteString("action", cancelled.NextAction);
                w.WriteString("code", cancelled.Code);
                w.WriteString("reason", cancelled.Reason);
                w.WriteEndObject();
            }
        };
    }

    private static void WriteMark(Utf8JsonWriter w, EscalationMark mark)
    {
        w.WriteString("kind", PolicyEngine.KindName(mark.Kind));
        w.WriteString("plan", mark.Plan);
        w.WriteNumber("trigger-seq", mark.TriggerSequence);
        w.WriteNumber("step", mark.Step);
        w.WriteNumber("of", mark.StepCount);
    }

    private static PendingEscalation? Pending(Escalation? escalation) => escalation is null ? null : new PendingEscalation
    {
        Kind = escalation.Kind,
        Plan = escalation.Plan,
        TriggerSequence = escalation.TriggerSequence,
        Step = escalation.Done,
        StepCount = escalation.StepCount,
        NextAction = escalation.Next.Action.Name,
        NextDue = escalation.Due,
        Vcpus = [.. escalation.Vcpus],
    };
}
