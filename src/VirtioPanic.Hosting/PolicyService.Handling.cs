using System.Diagnostics;
using System.Globalization;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Journal;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Hosting;

// Handling: pump events, decide, journal, act with fallbacks, journal the outcome, report.
public sealed partial class PolicyService
{
    // Events are read from the channel and handled under entry.Gate, one at a time. The pump is the
    // channel's only reader; the inline path never reads it (it handles only the report the device
    // handed it, see TryTakeInline). The pump looks before it takes the gate, so an idle pump never
    // holds the gate and the inline path finds it free.
    private async Task PumpAsync(DeviceEntry entry, CancellationToken stop)
    {
        ChannelReader<WatchdogEvent> reader = entry.Device.Events;
        try
        {
            while (await reader.WaitToReadAsync(stop).ConfigureAwait(false))
            {
                while (await TryHandleNextAsync(entry, reader).ConfigureAwait(false))
                {
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Stopping or detaching: fall through and drain.
        }

        // Nothing already queued is dropped: handle what the device reported before the stop.
        while (await TryHandleNextAsync(entry, reader).ConfigureAwait(false))
        {
        }
    }

    private async Task<bool> TryHandleNextAsync(DeviceEntry entry, ChannelReader<WatchdogEvent> reader)
    {
        if (!reader.TryPeek(out _))
        {
            return false;
        }

        await entry.Gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!reader.TryRead(out WatchdogEvent? evt))
            {
                return false;
            }

            await HandleEventUnderGateAsync(entry, evt).ConfigureAwait(false);
            return true;
        }
        finally
        {
            entry.Gate.Release();
        }
    }

    // The device's inline observer (InlinePanicHandling): the single-consumer decision for a
    // panic_events report, made inside the guest's write, under the transport's register lock and
    // the device's event lock, and only when no unread event of this device is ahead of it. Takes
    // the report when the gate is free at once (so nothing of this device is being handled) and
    // keeps the gate for it; a vCPU never waits for another event's VM-control call, so when the
    // gate is busy the report is declined and goes to the channel, for the pump.
    private Action? TryTakeInline(DeviceEntry entry, GuestReportEvent report)
    {
        if (entry.PumpStop.IsCancellationRequested || !entry.Gate.Wait(0))
        {
            return null;
        }

        // Runs in the write's post-access step, after the register lock is released: synchronously
        // up to the first VM-control call that does not complete at once.
        return () => _ = HandleTakenAsync(entry, report);
    }

    // Runs with entry.Gate held (taken by TryTakeInline) and releases it. A taken report is in no
    // channel, so it is handled even while the device is being detached (the detach waits for the gate).
    private async Task HandleTakenAsync(DeviceEntry entry, WatchdogEvent evt)
    {
        try
        {
            await HandleEventUnderGateAsync(entry, evt).ConfigureAwait(false);
        }
        finally
        {
            entry.Gate.Release();
        }
    }

    // Tests and benchmarks: completes once every event the device has reported so far is handled
    // and nothing holds the device's gate (condition-based, no quiet period).
    internal async Task WhenIdleAsync(string deviceId)
    {
        DeviceEntry entry = Entry(deviceId);
        while (true)
        {
            bool idle;
            await entry.Gate.WaitAsync().ConfigureAwait(false);
            try
            {
                idle = !entry.Device.Events.TryPeek(out _);
            }
            finally
            {
                entry.Gate.Release();
            }

            if (idle)
            {
                return;
            }

            // The pump has work queued and needs the gate: let it run.
            await Task.Delay(1).ConfigureAwait(false);
        }
    }

    // Runs under entry.Gate.
    private async Task HandleEventUnderGateAsync(DeviceEntry entry, WatchdogEvent evt)
    {
        try
        {
            DateTimeOffset now = _time.GetUtcNow();
            PolicyDecision decision = PolicyEngine.OnEvent(entry.State, entry.Policy, evt, now);
            _metrics.Event(evt.Kind);
            if (ShouldLog(entry, LogLevel.Error))
            {
                VirtioPanicLog.Event(_logger, evt, decision.Action);
            }

            await ApplyAsync(entry, decision, "event", QmpEvents.NameOf(evt.Kind), evt.Sequence, evt).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            if (ShouldLog(entry, LogLevel.Error))
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
            if (decision.Action == PolicyEngine.Ignored || deadline is null)
            {
                return;
            }

            await ApplyAsync(entry, decision, "deadline", "DEADLINE", deadline.TriggerSequence, trigger: null).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            if (ShouldLog(entry, LogLevel.Error))
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
    private async Task<HandledEvent> ApplyAsync(DeviceEntry entry, PolicyDecision decision, string type, string name, long sequence, WatchdogEvent? trigger)
    {
        bool acting = !decision.Steps.IsEmpty;
        if (decision.Note is not null)
        {
            if (decision.StormTripped)
            {
                _metrics.StormTrip();
                if (ShouldLog(entry, LogLevel.Error))
                {
                    VirtioPanicLog.StormGuardTripped(_logger, entry.Id, decision.Note);
                }
            }
            else if (ShouldLog(entry, LogLevel.Warning))
            {
                VirtioPanicLog.PolicyNote(_logger, entry.Id, decision.Note);
            }
        }

        // 1. Journal the decision before acting on it.
        EventJournal? journal = Volatile.Read(ref _journal);
        long id = journal?.NextId() ?? 0;
        bool journaled = await TryJournalAsync(
            journal,
            () => JournalRecords.Decision(type, journal!.Run, id, _time.GetUtcNow(), entry.Id, sequence, name, decision.Action, acting, decision.Note, trigger),
            flushToDisk: !acting || _options.JournalDurability == JournalDurability.FlushBeforeAction,
            JournalMarks.Decides | (acting ? JournalMarks.Opens : JournalMarks.None),
            id,
            entry.Id,
            sequence).ConfigureAwait(false);

        // 2. The new state and its deadline.
        PendingDeadline? previous = entry.State.Deadline;
        entry.State = decision.State;
        if (!Equals(previous, decision.State.Deadline))
        {
            RescheduleDeadline(entry);
        }

        // 3. Act, with fallbacks.
        IReadOnlyList<ActionOutcome> outcomes = acting ? await ExecuteAsync(entry, decision, sequence, trigger).ConfigureAwait(false) : [];
        entry.State = PolicyEngine.AfterExecution(entry.State, outcomes);
        if (!Equals(decision.State.Deadline, entry.State.Deadline))
        {
            RescheduleDeadline(entry);
        }

        // 4. Journal the outcome: only now does the event count as handled.
        var handled = new HandledEvent
        {
            DeviceId = entry.Id,
            Sequence = sequence,
            Name = name,
            Event = trigger,
            PolicyAction = decision.Action,
            Steps = outcomes,
            Note = decision.Note,
            ManagementJson = trigger is null ? ManagementJson(name, entry.Id, sequence, decision.Action) : null,
            HandledAt = _time.GetUtcNow(),
            Journaled = journaled,
        };
        if (acting)
        {
            string outcome = handled.Outcome;
            bool closed = await TryJournalAsync(journal, () => JournalRecords.Outcome(journal!.Run, id, _time.GetUtcNow(), outcome, outcomes), flushToDisk: true, JournalMarks.Closes, id, entry.Id, sequence).ConfigureAwait(false);
            handled = handled with { Journaled = journaled & closed };
        }

        entry.Record(handled);
        try
        {
            EventHandled?.Invoke(this, handled);
        }
        catch (Exception ex)
        {
            if (ShouldLog(entry, LogLevel.Warning))
            {
                VirtioPanicLog.SubscriberFailed(_logger, ex, entry.Id);
            }
        }

        return handled;
    }

    private async Task<IReadOnlyList<ActionOutcome>> ExecuteAsync(DeviceEntry entry, PolicyDecision decision, long sequence, WatchdogEvent? trigger)
    {
        var outcomes = new List<ActionOutcome>(decision.Steps.Length + 1);
        if (trigger is not null)
        {
            _metrics.Latency(trigger.Kind, _time.GetUtcNow() - trigger.HostTime);
        }

        for (int i = 0; i < decision.Steps.Length; i++)
        {
            PlannedStep step = decision.Steps[i];
            ActionOutcome outcome = await RunStepAsync(entry, step, fallbackFor: null, decision.Action, sequence, trigger).ConfigureAwait(false);
            outcomes.Add(outcome);
            if (outcome.Succeeded)
            {
                continue;
            }

            Fallback fallback = PolicyEngine.FallbackFor(step, moreSteps: i < decision.Steps.Length - 1);
            if (fallback.Kind == FallbackKind.ContinueWithRemaining)
            {
                if (ShouldLog(entry, LogLevel.Warning))
                {
                    VirtioPanicLog.Fallback(_logger, entry.Id, sequence, PolicyNames.Of(step.Operation), "continue with " + PolicyNames.Of(decision.Steps[i + 1].Operation));
                }

                continue;
            }

            PlannedStep failed = step;
            ActionOutcome last = outcome;
            while (fallback.Kind == FallbackKind.Run)
            {
                if (ShouldLog(entry, LogLevel.Warning))
                {
                    VirtioPanicLog.Fallback(_logger, entry.Id, sequence, PolicyNames.Of(failed.Operation), PolicyNames.Of(fallback.Step.Operation));
                }

                last = await RunStepAsync(entry, fallback.Step, failed.Operation, decision.Action, sequence, trigger).ConfigureAwait(false);
                outcomes.Add(last);
                if (last.Succeeded)
                {
                    break;
                }

                failed = fallback.Step;
                fallback = PolicyEngine.FallbackFor(failed, moreSteps: false);
            }

            if (!last.Succeeded && ShouldLog(entry, LogLevel.Critical))
            {
                VirtioPanicLog.ActionExhausted(_logger, entry.Id, sequence, decision.Action, last.Error);
            }

            break;
        }

        return outcomes;
    }

    private async Task<ActionOutcome> RunStepAsync(DeviceEntry entry, PlannedStep step, VmOperation? fallbackFor, string action, long sequence, WatchdogEvent? trigger)
    {
        var context = new VmActionContext
        {
            DeviceId = entry.Id,
            Operation = step.Operation,
            PolicyAction = action,
            Trigger = trigger,
            BootReason = step.BootReason,
        };
        string? path = null;
        long start = Stopwatch.GetTimestamp();
        VmControlResult result;
        CancellationTokenSource timeout = entry.ActionCancel is { } reusable && reusable.TryReset() ? reusable : NewActionSource(entry);
        Volatile.Write(ref entry.ActionDeadline, _time.GetTimestamp() + (long)(_options.ActionTimeout.TotalSeconds * _time.TimestampFrequency));
        _inFlight.TryAdd(entry, 0);
        try
        {
            switch (step.Operation)
            {
                case VmOperation.Pause:
                    result = await entry.Vm.PauseAsync(context, timeout.Token).ConfigureAwait(false);
                    break;
                case VmOperation.Resume:
                    result = await entry.Vm.ResumeAsync(context, timeout.Token).ConfigureAwait(false);
                    break;
                case VmOperation.Reset:
                    // The guest learns why on its next boot (spec §6.7): set before the reset.
                    entry.Device.SetBootReason(step.BootReason);
                    result = await entry.Vm.ResetAsync(context, timeout.Token).ConfigureAwait(false);
                    break;
                case VmOperation.PowerOff:
                    result = await entry.Vm.PowerOffAsync(context, timeout.Token).ConfigureAwait(false);
                    break;
                case VmOperation.RequestShutdown:
                    result = await entry.Vm.RequestShutdownAsync(context, timeout.Token).ConfigureAwait(false);
                    break;
                case VmOperation.DumpGuestMemory:
                    path = DumpPath(entry.Id, sequence);
                    JournalFiles.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
                    result = await entry.Vm.DumpGuestMemoryAsync(context, path, timeout.Token).ConfigureAwait(false);
                    break;
                default:
                    result = await entry.Vm.InjectNmiAsync(context, timeout.Token).ConfigureAwait(false);
                    break;
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            result = VmControlResult.Failure($"timed out after {_options.ActionTimeout}");
        }
        catch (Exception ex)
        {
            result = VmControlResult.Failure($"{ex.GetType().Name}: {ex.Message}");
        }
        finally
        {
            Volatile.Write(ref entry.ActionDeadline, 0);
            _inFlight.TryRemove(entry, out _);
        }

        if (result.Succeeded)
        {
            // Keep the device's run-time clock in step with the VM (idempotent if the hypervisor did it).
            if (step.Operation == VmOperation.Pause)
            {
                entry.Device.Pause();
            }
            else if (step.Operation == VmOperation.Resume)
            {
                entry.Device.Resume();
            }
        }

        TimeSpan elapsed = Stopwatch.GetElapsedTime(start);
        _metrics.Action(step.Operation, result.Succeeded, elapsed);
        string operation = PolicyNames.Of(step.Operation);
        if (result.Succeeded)
        {
            if (ShouldLog(entry, LogLevel.Information))
            {
                VirtioPanicLog.ActionSucceeded(_logger, entry.Id, sequence, action, operation, fallbackFor is null ? "succeeded" : "succeeded (fallback)", elapsed.TotalMilliseconds);
            }
        }
        else if (ShouldLog(entry, LogLevel.Error))
        {
            VirtioPanicLog.ActionFailed(_logger, entry.Id, sequence, action, operation, "failed", elapsed.TotalMilliseconds, result.Error);
        }

        return new ActionOutcome
        {
            Operation = step.Operation,
            Succeeded = result.Succeeded,
            Error = result.Succeeded ? null : result.Error ?? "failed",
            FallbackFor = fallbackFor,
            Duration = elapsed,
            Path = path,
        };
    }

    private static CancellationTokenSource NewActionSource(DeviceEntry entry)
    {
        entry.ActionCancel?.Dispose();
        entry.ActionCancel = new CancellationTokenSource();
        return entry.ActionCancel;
    }

    private string DumpPath(string deviceId, long sequence)
    {
        string safe = string.Concat(deviceId.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_'));
        string stamp = _time.GetUtcNow().ToString("yyyyMMdd'T'HHmmss", CultureInfo.InvariantCulture);
        return System.IO.Path.GetFullPath(System.IO.Path.Combine(_options.DumpDirectory, $"{safe}-{stamp}-{sequence}.dump"));
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
                var (manager, target) = ((PolicyService, DeviceEntry))state!;
                _ = manager.OnDeadlineAsync(target);
            },
            (this, entry),
            due > TimeSpan.Zero ? due : TimeSpan.FromMilliseconds(1),
            Timeout.InfiniteTimeSpan);
    }

    private static string ManagementJson(string name, string deviceId, long sequence, string action) => System.Text.Encoding.UTF8.GetString(
        EventJournal.Line(w =>
        {
            w.WriteStartObject();
            w.WriteString("event", name);
            w.WriteStartObject("data");
            w.WriteString("device", deviceId);
            w.WriteNumber("sequence", sequence);
            w.WriteString("policy", action);
            w.WriteEndObject();
            w.WriteEndObject();
        }).AsSpan()[..^1]);
}
