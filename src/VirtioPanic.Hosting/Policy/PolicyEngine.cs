using System.Collections.Immutable;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting.Policy;

// Design: every policy decision is a pure function of (state, policy, input, now): no clock, no
// I/O, no VM calls. The service feeds it device events, deadlines and management requests, makes
// the VM-control calls the decision lists, and feeds the outcomes back (AfterExecution, FallbackFor).
// Tests drive it directly with timestamps from a FakeTimeProvider.
internal static class PolicyEngine
{
    internal static PanicAction EffectivePanicAction(DevicePolicyState state, DevicePolicy policy) =>
        state.StormGuard ? PanicAction.Preserve : policy.OnPanic;

    internal static ImmutableArray<PlannedStep> PanicSteps(PanicAction action) => action switch
    {
        PanicAction.Destroy => [new(VmOperation.PowerOff)],
        PanicAction.Restart => [new(VmOperation.Reset, WatchdogBootReason.Panic)],
        PanicAction.Preserve => [new(VmOperation.Pause)],
        PanicAction.CoredumpDestroy => [new(VmOperation.DumpGuestMemory), new(VmOperation.PowerOff)],
        PanicAction.CoredumpRestart => [new(VmOperation.DumpGuestMemory), new(VmOperation.Reset, WatchdogBootReason.Panic)],
        _ => [],
    };

    internal static ImmutableArray<PlannedStep> WatchdogSteps(WatchdogAction action) => action switch
    {
        WatchdogAction.Reset => [new(VmOperation.Reset, WatchdogBootReason.Watchdog)],
        WatchdogAction.Shutdown => [new(VmOperation.RequestShutdown)],
        WatchdogAction.Poweroff => [new(VmOperation.PowerOff)],
        WatchdogAction.Pause => [new(VmOperation.Pause)],
        WatchdogAction.Dump => [new(VmOperation.DumpGuestMemory)],
        WatchdogAction.InjectNmi => [new(VmOperation.InjectNmi)],
        _ => [],
    };

    internal static PolicyDecision OnEvent(DevicePolicyState state, DevicePolicy policy, WatchdogEvent evt, DateTimeOffset now) => evt switch
    {
        GuestPanickedEvent panic => OnPanic(state, policy, panic, now),
        GuestCrashLoadedEvent crash => OnCrashLoaded(state, policy, crash, now),
        WatchdogExpiredEvent => new PolicyDecision
        {
            State = state,
            Action = DecidedAction.Watchdog(policy.OnWatchdog),
            Steps = WatchdogSteps(policy.OnWatchdog),
        },
        GuestShutdownEvent => OnGuestFinished(state, "guest reported shutdown"),
        DriverResetEvent => OnDriverReset(state),
        _ => new PolicyDecision { State = state, Action = DecidedAction.Log },
    };

    // A pending deadline's time came (the service re-checks 'now' under the device's lock).
    internal static PolicyDecision OnDeadline(DevicePolicyState state, DevicePolicy policy, DateTimeOffset now)
    {
        if (state.Deadline is not { } deadline || now < deadline.Due)
        {
            return new PolicyDecision { State = state, Action = DecidedAction.Ignored };
        }

        PanicAction action = deadline.Kind == PendingDeadlineKind.PanicGrace ? EffectivePanicAction(state, policy) : policy.OnCrashKernelTimeout;
        string note = deadline.Kind == PendingDeadlineKind.PanicGrace
            ? $"grace window elapsed without a guest reset; applying {PolicyNames.Of(action)}"
            : $"crash kernel did not finish within {policy.CrashKernelDeadline}; applying {PolicyNames.Of(action)}";
        return new PolicyDecision
        {
            State = state with { Deadline = null, Condition = GuestCondition.Panicked },
            Action = DecidedAction.Panic(action),
            Steps = PanicSteps(action),
            Note = note,
        };
    }

    // Management Continue: resume a VM the policy paused and clear the panicked state.
    internal static PolicyDecision OnContinue(DevicePolicyState state)
    {
        string note = state.Condition switch
        {
            GuestCondition.Paused => "resuming the VM; panicked state cleared",
            GuestCondition.Panicked or GuestCondition.CrashKernel => "panicked state cleared",
            _ => "nothing to continue",
        };
        return new PolicyDecision
        {
            State = state with { Condition = state.Condition == GuestCondition.PoweredOff ? GuestCondition.PoweredOff : GuestCondition.Running, Deadline = null },
            Action = DecidedAction.Continue,
            Steps = state.Condition == GuestCondition.Paused ? [new(VmOperation.Resume)] : [],
            Note = note,
        };
    }

    // The hypervisor saw the guest reset (reboot) by itself: pending deadlines are moot.
    internal static PolicyDecision OnGuestReset(DevicePolicyState state) => OnGuestFinished(state, "hypervisor reported a guest reset") with { Action = DecidedAction.GuestReset };

    // A new policy: the storm guard starts over.
    internal static DevicePolicyState OnPolicyChanged(DevicePolicyState state) => state with { StormGuard = false, RecentPanics = [] };

    // What to do when a step failed; moreSteps says whether the plan had steps after it.
    internal static Fallback FallbackFor(PlannedStep failed, bool moreSteps) => failed.Operation switch
    {
        VmOperation.DumpGuestMemory when moreSteps => new Fallback(FallbackKind.ContinueWithRemaining, default),
        VmOperation.DumpGuestMemory => new Fallback(FallbackKind.Run, new PlannedStep(VmOperation.Reset, WatchdogBootReason.Watchdog)),
        VmOperation.Reset => new Fallback(FallbackKind.Run, new PlannedStep(VmOperation.PowerOff)),
        VmOperation.RequestShutdown => new Fallback(FallbackKind.Run, new PlannedStep(VmOperation.PowerOff)),
        VmOperation.InjectNmi => new Fallback(FallbackKind.Run, new PlannedStep(VmOperation.Reset, WatchdogBootReason.Watchdog)),
        _ => new Fallback(FallbackKind.None, default),
    };

    // The condition after the calls made (in order, fallbacks included).
    internal static DevicePolicyState AfterExecution(DevicePolicyState state, IReadOnlyList<ActionOutcome> outcomes)
    {
        DevicePolicyState result = state;
        foreach (ActionOutcome outcome in outcomes)
        {
            result = (outcome.Operation, outcome.Succeeded) switch
            {
                (VmOperation.Reset, true) => result with { Condition = GuestCondition.Running, Deadline = null },
                (VmOperation.PowerOff, true) => result with { Condition = GuestCondition.PoweredOff, Deadline = null },
                (VmOperation.Pause, true) => result with { Condition = GuestCondition.Paused },
                (VmOperation.Resume, true) => result with { Condition = GuestCondition.Running },
                (VmOperation.Resume, false) => result with { Condition = GuestCondition.Paused },
                _ => result,
            };
        }

        return result;
    }

    private static PolicyDecision OnPanic(DevicePolicyState state, DevicePolicy policy, GuestPanickedEvent panic, DateTimeOffset now)
    {
        // Only the last StormThreshold panics inside the window matter: memory per device stays bounded.
        ImmutableArray<DateTimeOffset> recent = policy.StormThreshold == 0 ? [] : WithinWindow(state.RecentPanics, now - policy.StormWindow).Add(now);
        bool tripped = state.StormGuard || (policy.StormThreshold > 0 && recent.Length >= policy.StormThreshold);
        bool newlyTripped = tripped && !state.StormGuard;
        if (recent.Length > policy.StormThreshold)
        {
            recent = recent.RemoveRange(0, recent.Length - policy.StormThreshold);
        }

        DevicePolicyState next = state with { RecentPanics = recent, StormGuard = tripped, Condition = GuestCondition.Panicked };
        PanicAction action = tripped ? PanicAction.Preserve : policy.OnPanic;
        if (!tripped && action != PanicAction.LogOnly && policy.PanicGracePeriod > TimeSpan.Zero)
        {
            return new PolicyDecision
            {
                State = next with { Deadline = new PendingDeadline(PendingDeadlineKind.PanicGrace, now + policy.PanicGracePeriod, panic.Sequence) },
                Action = DecidedAction.Grace,
                Note = $"grace window of {policy.PanicGracePeriod} before {PolicyNames.Of(action)}; a guest reset cancels it",
            };
        }

        return new PolicyDecision
        {
            State = next with { Deadline = null },
            Action = DecidedAction.Panic(action),
            Steps = PanicSteps(action),
            StormTripped = newlyTripped,
            Note = newlyTripped
                ? $"panic storm: {recent.Length} panics within {policy.StormWindow}; panic action switched from {PolicyNames.Of(policy.OnPanic)} to preserve until the policy is set again"
                : null,
        };
    }

    private static PolicyDecision OnCrashLoaded(DevicePolicyState state, DevicePolicy policy, GuestCrashLoadedEvent crash, DateTimeOffset now)
    {
        if (policy.CrashKernelDeadline > TimeSpan.Zero)
        {
            return new PolicyDecision
            {
                State = state with { Condition = GuestCondition.CrashKernel, Deadline = new PendingDeadline(PendingDeadlineKind.CrashKernel, now + policy.CrashKernelDeadline, crash.Sequence) },
                Action = DecidedAction.Log,
                Note = $"crash kernel has {policy.CrashKernelDeadline} to finish before {PolicyNames.Of(policy.OnCrashKernelTimeout)}",
            };
        }

        return new PolicyDecision
        {
            State = state with { Condition = GuestCondition.CrashKernel, Deadline = null },
            Action = DecidedAction.Log,
            Note = state.Deadline is not null ? "crash kernel took over; pending deadline cancelled" : null,
        };
    }

    private static PolicyDecision OnDriverReset(DevicePolicyState state)
    {
        // A crash kernel probing the device resets it too, so only a grace window is cancelled here.
        if (state.Deadline is { Kind: PendingDeadlineKind.PanicGrace })
        {
            return new PolicyDecision
            {
                State = state with { Deadline = null, Condition = GuestCondition.Running },
                Action = DecidedAction.Log,
                Note = "guest reset itself within the grace window; panic action cancelled",
            };
        }

        return new PolicyDecision
        {
            State = state.Condition == GuestCondition.Panicked ? state with { Condition = GuestCondition.Running } : state,
            Action = DecidedAction.Log,
        };
    }

    private static PolicyDecision OnGuestFinished(DevicePolicyState state, string why)
    {
        string? note = state.Deadline switch
        {
            { Kind: PendingDeadlineKind.PanicGrace } => $"{why} within the grace window; panic action cancelled",
            { Kind: PendingDeadlineKind.CrashKernel } => $"{why}: crash kernel finished; deadline cancelled",
            _ => null,
        };
        return new PolicyDecision
        {
            State = state with { Deadline = null, Condition = state.Condition is GuestCondition.Paused or GuestCondition.PoweredOff ? state.Condition : GuestCondition.Running },
            Action = DecidedAction.Log,
            Note = note,
        };
    }

    private static ImmutableArray<DateTimeOffset> WithinWindow(ImmutableArray<DateTimeOffset> times, DateTimeOffset since)
    {
        int first = 0;
        while (first < times.Length && times[first] <= since)
        {
            first++;
        }

        return first == 0 ? times : times.RemoveRange(0, first);
    }
}
