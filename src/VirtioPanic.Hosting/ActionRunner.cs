using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Journal;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Hosting;

// Design: makes a decision's VM-control calls. Runs the planned steps in order, the fallbacks
// PolicyEngine.FallbackFor names when one fails, the dump (its path under DumpDirectory), and keeps
// the device's run-time clock in step with a pause or resume that succeeded. It owns the calls in
// flight: one per device at most (the caller holds the device's gate), each with a reusable token
// source and a deadline that the service's periodic sweep (CancelOverdue) enforces. A timer per call
// would wake the runtime's timer thread on the panic-to-action path; the sweep checks a few times
// per timeout (SweepPeriod) instead.
internal sealed class ActionRunner
{
    private readonly VirtioPanicOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly VirtioPanicMetrics _metrics;
    private readonly EventLogLimiter _logs;

    // One slot per device that has made a call (its token source is reused); removed at detach (Forget).
    private readonly ConcurrentDictionary<DeviceEntry, InFlightCall> _calls = new();

    // The slots whose call is in flight now: what the sweep looks at.
    private readonly ConcurrentDictionary<InFlightCall, byte> _inFlight = new();

    internal ActionRunner(VirtioPanicOptions options, TimeProvider time, ILogger logger, VirtioPanicMetrics metrics, EventLogLimiter logs)
    {
        _options = options;
        _time = time;
        _logger = logger;
        _metrics = metrics;
        _logs = logs;
    }

    // How often the sweep runs: a few times per timeout, at least every second, at most every 10 ms.
    internal static TimeSpan SweepPeriod(TimeSpan timeout) =>
        TimeSpan.FromTicks(Math.Clamp(timeout.Ticks / 4, TimeSpan.TicksPerMillisecond * 10, TimeSpan.TicksPerSecond));

    // The action's span (PolicyServiceMetrics.ActivitySourceName) around ExecuteStepsAsync, only
    // when the decision makes calls and a listener samples it: one event per call, the last call's status.
    // cause: for an escalation's later step, the event that started it (the calls' VmActionContext.Trigger).
    internal async Task<IReadOnlyList<ActionOutcome>> ExecuteAsync(DeviceEntry entry, PolicyDecision decision, long sequence, WatchdogEvent? trigger, WatchdogEvent? cause = null)
    {
        using Activity? span = decision.Steps.Length == 0 ? null : PolicyServiceMetrics.Activities.StartActivity("virtiopanic.action");
        if (span is null)
        {
            return await ExecuteStepsAsync(entry, decision, sequence, trigger, cause).ConfigureAwait(false);
        }

        span.SetTag("virtiopanic.device.id", entry.Id);
        span.SetTag("virtiopanic.event.name", trigger is null ? null : QmpEvents.NameOf(trigger.Kind));
        span.SetTag("virtiopanic.event.sequence", sequence);
        span.SetTag("virtiopanic.policy.action", decision.Action.Name);
        IReadOnlyList<ActionOutcome> outcomes = await ExecuteStepsAsync(entry, decision, sequence, trigger, cause).ConfigureAwait(false);
        foreach (ActionOutcome o in outcomes)
        {
            span.AddEvent(new ActivityEvent(PolicyNames.Of(o.Operation), tags: new ActivityTagsCollection
            {
                ["virtiopanic.outcome"] = o.Succeeded ? "succeeded" : "failed",
                ["virtiopanic.error"] = o.Error,
                ["virtiopanic.duration_s"] = o.Duration.TotalSeconds,
            }));
        }

        bool succeeded = outcomes.Count == 0 || outcomes[^1].Succeeded;
        span.SetStatus(succeeded ? ActivityStatusCode.Ok : ActivityStatusCode.Error, succeeded ? null : outcomes[^1].Error);
        return outcomes;
    }

    // Runs under the device's gate: every step, with fallbacks; the outcomes in the order they ran.
    private async Task<IReadOnlyList<ActionOutcome>> ExecuteStepsAsync(DeviceEntry entry, PolicyDecision decision, long sequence, WatchdogEvent? trigger, WatchdogEvent? cause)
    {
        var outcomes = new List<ActionOutcome>(decision.Steps.Length + 1);
        if (trigger is not null)
        {
            _metrics.Latency(entry.Id, trigger.Kind, _time.GetUtcNow() - trigger.HostTime);
        }

        string action = decision.Action.Name;
        for (int i = 0; i < decision.Steps.Length; i++)
        {
            PlannedStep step = decision.Steps[i];
            ActionOutcome outcome = await RunStepAsync(entry, step, fallbackFor: null, action, sequence, trigger ?? cause).ConfigureAwait(false);
            outcomes.Add(outcome);
            if (outcome.Succeeded)
            {
                continue;
            }

            if (!decision.Fallbacks)
            {
                // An escalation step with steps after it: the next one runs at once instead.
                if (_logs.ShouldLog(entry, LogLevel.Warning))
                {
                    VirtioPanicLog.Fallback(_logger, entry.Id, sequence, PolicyNames.Of(step.Operation), "the escalation's next step, at once");
                }

                break;
            }

            Fallback fallback = PolicyEngine.FallbackFor(step, moreSteps: i < decision.Steps.Length - 1);
            if (fallback.Kind == FallbackKind.ContinueWithRemaining)
            {
                if (_logs.ShouldLog(entry, LogLevel.Warning))
                {
                    VirtioPanicLog.Fallback(_logger, entry.Id, sequence, PolicyNames.Of(step.Operation), "continue with " + PolicyNames.Of(decision.Steps[i + 1].Operation));
                }

                continue;
            }

            PlannedStep failed = step;
            ActionOutcome last = outcome;
            while (fallback.Kind == FallbackKind.Run)
            {
                if (_logs.ShouldLog(entry, LogLevel.Warning))
                {
                    VirtioPanicLog.Fallback(_logger, entry.Id, sequence, PolicyNames.Of(failed.Operation), PolicyNames.Of(fallback.Step.Operation));
                }

                last = await RunStepAsync(entry, fallback.Step, failed.Operation, action, sequence, trigger ?? cause).ConfigureAwait(false);
                outcomes.Add(last);
                if (last.Succeeded)
                {
                    break;
                }

                failed = fallback.Step;
                fallback = PolicyEngine.FallbackFor(failed, moreSteps: false);
            }

            if (!last.Succeeded && _logs.ShouldLog(entry, LogLevel.Critical))
            {
                VirtioPanicLog.ActionExhausted(_logger, entry.Id, sequence, action, last.Error);
            }

            break;
        }

        return outcomes;
    }

    // From the service's periodic sweep (a timer thread): cancels every call past its deadline.
    internal void CancelOverdue()
    {
        long now = _time.GetTimestamp();
        foreach (KeyValuePair<InFlightCall, byte> pair in _inFlight)
        {
            InFlightCall call = pair.Key;
            long deadline = Volatile.Read(ref call.Deadline);
            if (deadline != 0 && now >= deadline)
            {
                try
                {
                    Volatile.Read(ref call.Cancel)?.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // The call finished and its source was replaced meanwhile.
                }
            }
        }
    }

    // At detach, under the device's gate (no call in flight): its token source goes.
    internal void Forget(DeviceEntry entry)
    {
        if (_calls.TryRemove(entry, out InFlightCall? call))
        {
            call.Cancel?.Dispose();
        }
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
        InFlightCall call = _calls.GetOrAdd(entry, static _ => new InFlightCall());
        CancellationTokenSource timeout = call.Renew();
        Volatile.Write(ref call.Deadline, _time.GetTimestamp() + (long)(_options.ActionTimeout.TotalSeconds * _time.TimestampFrequency));
        _inFlight.TryAdd(call, 0);
        try
        {
            if (step.Operation == VmOperation.Reset)
            {
                // The guest learns why on its next boot (spec §6.7): set before the reset.
                entry.Device.SetBootReason(step.BootReason);
            }
            else if (step.Operation == VmOperation.DumpGuestMemory)
            {
                path = DumpPath(entry.Id, sequence);
                JournalFiles.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
            }

            result = await Call(entry.Vm, step.Operation, context, path, timeout.Token).ConfigureAwait(false);
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
            Volatile.Write(ref call.Deadline, 0);
            _inFlight.TryRemove(call, out _);
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
        _metrics.Action(entry.Id, step.Operation, result.Succeeded, elapsed);
        string operation = PolicyNames.Of(step.Operation);
        if (result.Succeeded)
        {
            if (_logs.ShouldLog(entry, LogLevel.Information))
            {
                VirtioPanicLog.ActionSucceeded(_logger, entry.Id, sequence, action, operation, fallbackFor is null ? "succeeded" : "succeeded (fallback)", elapsed.TotalMilliseconds);
            }
        }
        else if (_logs.ShouldLog(entry, LogLevel.Error))
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

    // The one IVmControl member an operation maps to.
    private static ValueTask<VmControlResult> Call(IVmControl vm, VmOperation operation, VmActionContext context, string? dumpPath, CancellationToken token)
    {
        switch (operation)
        {
            case VmOperation.Pause:
                return vm.PauseAsync(context, token);
            case VmOperation.Resume:
                return vm.ResumeAsync(context, token);
            case VmOperation.Reset:
                return vm.ResetAsync(context, token);
            case VmOperation.PowerOff:
                return vm.PowerOffAsync(context, token);
            case VmOperation.RequestShutdown:
                return vm.RequestShutdownAsync(context, token);
            case VmOperation.DumpGuestMemory:
                return vm.DumpGuestMemoryAsync(context, dumpPath!, token);
            default:
                return vm.InjectNmiAsync(context, token);
        }
    }

    private string DumpPath(string deviceId, long sequence)
    {
        string safe = string.Concat(deviceId.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_'));
        string stamp = _time.GetUtcNow().ToString("yyyyMMdd'T'HHmmss", CultureInfo.InvariantCulture);
        return System.IO.Path.GetFullPath(System.IO.Path.Combine(_options.DumpDirectory, $"{safe}-{stamp}-{sequence}.dump"));
    }

    // One device's call slot. Cancel is replaced (and the old one disposed) only by the call's own
    // thread, under the device's gate; the sweep reads it with Volatile and tolerates a disposed one.
    // Deadline: TimeProvider timestamp by which the call in flight must finish, 0 when none is in
    // flight; Volatile on both sides (a stale read at worst cancels a call that just finished, whose
    // token is renewed before the next call).
    private sealed class InFlightCall
    {
        internal CancellationTokenSource? Cancel;
        internal long Deadline;

        // A token source for the next call: the last one if it was never cancelled, else a new one.
        internal CancellationTokenSource Renew()
        {
            if (Cancel is { } reusable && reusable.TryReset())
            {
                return reusable;
            }

            Cancel?.Dispose();
            Volatile.Write(ref Cancel, new CancellationTokenSource());
            return Cancel!;
        }
    }
}
