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

    // Each action's plan is made once: ImmutableArray is immutable, so every decision can share it
    // (a decision allocates only its own records; allocation-budget.json).
    private static readonly ImmutableArray<PlannedStep> s_powerOff = [new(VmOperation.PowerOff)];
    private static readonly ImmutableArray<PlannedStep> s_resetPanic = [new(VmOperation.Reset, WatchdogBootReason.Panic)];
    private static readonly ImmutableArray<PlannedStep> s_resetWatchdog = [new(VmOperation.Reset, WatchdogBootReason.Watchdog)];
    private static readonly ImmutableArray<PlannedStep> s_pause = [new(VmOperation.Pause)];
    private static readonly ImmutableArray<PlannedStep> s_dumpPowerOff = [new(VmOperation.DumpGuestMemory), new(VmOperation.PowerOff)];
    private static readonly ImmutableArray<PlannedStep> s_dumpResetPanic = [new(VmOperation.DumpGuestMemory), new(VmOperation.Reset, WatchdogBootReason.Panic)];
    private static readonly ImmutableArray<PlannedStep> s_requestShutdown = [new(VmOperation.RequestShutdown)];
    private static readonly ImmutableArray<PlannedStep> s_dump = [new(VmOperation.DumpGuestMemory)];
    private static readonly ImmutableArray<PlannedStep> s_injectNmi = [new(VmOperation.InjectNmi)];

    internal static ImmutableArray<PlannedStep> PanicSteps(PanicAction action) => action switch
    {
        PanicAction.Destroy => s_powerOff,
        PanicAction.Restart => s_resetPanic,
        PanicAction.Preserve => s_pause,
        PanicAction.CoredumpDestroy => s_dumpPowerOff,
        PanicAction.CoredumpRestart => s_dumpResetPanic,
        _ => [],
    };

    internal static ImmutableArray<PlannedStep> WatchdogSteps(WatchdogAction action) => action switch
    {
        WatchdogAction.Reset => s_resetWatchdog,
        WatchdogAction.Shutdown => s_requestShutdown,
        WatchdogAction.Poweroff => s_powerOff,
        WatchdogAction.Pause => s_pause,
        WatchdogAction.Dump => s_dump,
        WatchdogAction.InjectNmi => s_injectNmi,
        _ => [],
    };

    internal static PolicyDecision OnEvent(DevicePolicyState state, DevicePolicy policy, WatchdogEvent evt, DateTimeOffset now) => evt switch
    {
        GuestPanickedEvent panic => WithCancel(OnPanic(Cancel(state, s_allKinds, "panic", "a panic report took over", out CancelledEscalation? c1), policy, panic, now), c1),
        GuestCrashLoadedEvent crash => WithCancel(OnCrashLoaded(Cancel(state, s_allKinds, "crash-loaded", "a crash kernel took over", out CancelledEscalation? c2), policy, crash, now), c2),
        WatchdogExpiredEvent expired => OnExpired(state, policy, expired, now),
        GuestShutdownEvent => WithCancel(OnGuestFinished(Cancel(state, s_allKinds, "shutdown", "the guest reported a shutdown", out CancelledEscalation? c3), "guest reported shutdown"), c3),
        DriverResetEvent => WithCancel(OnDriverReset(Cancel(state, s_allKinds, "driver-reset", "the guest's driver reset the device", out CancelledEscalation? c4)), c4),
        VcpuStallExpiredEvent stall => OnVcpuStallExpired(state, policy, stall, now),
        VcpuRecoveredEvent recovered => OnVcpuRecovered(state, recovered),
        WatchdogArmedEvent => WithCancel(new PolicyDecision { State = Cancel(state, EscalationKind.Watchdog, "recovered", "the watchdog was armed again (keepalive)", out CancelledEscalation? c5), Action = DecidedAction.Log }, c5),
        _ => new PolicyDecision { State = state, Action = DecidedAction.Log },
    };

    // An escalation step's time came. watchdogArmed: the device's watchdog is armed now (the guest
    // re-armed it after the expiry, even if that event was dropped or is still queued), which
    // cancels a watchdog escalation instead of acting.
    internal static PolicyDecision OnEscalationDue(DevicePolicyState state, DateTimeOffset now, bool watchdogArmed)
    {
        if (state.Escalation is not { } escalation || now < escalation.Due)
        {
            return new PolicyDecision { State = state, Action = DecidedAction.Ignored };
        }

        if (escalation.Kind == EscalationKind.Watchdog && watchdogArmed)
        {
            DevicePolicyState cancelled = Cancel(state, EscalationKind.Watchdog, "recovered", "the watchdog was armed again (keepalive)", out CancelledEscalation? why);
            return WithCancel(new PolicyDecision { State = cancelled, Action = DecidedAction.Cancelled }, why);
        }

        EscalationStepPlan step = escalation.Next;
        int number = escalation.Done + 1;
        bool last = number == escalation.StepCount;
        Escalation? next = last ? null : escalation with { Done = number, Due = now + escalation.Later[number - 1].After };
        string note = $"{KindName(escalation.Kind)} escalation '{escalation.Plan}': step {number} of {escalation.StepCount} ({step.Action.Name}) after {EscalationText.Delay(step.After)} {Without(escalation)}"
            + (next is null ? string.Empty : $"; {next.Next.Action.Name} in {EscalationText.Delay(next.Next.After)} unless {Recovery(next)}");
        return new PolicyDecision
        {
            State = state with { Escalation = next },
            Action = step.Action,
            Steps = step.Calls,
            Note = note,
            EscalationStep = escalation.Mark(number),
            Fallbacks = last,
        };
    }

    // After an escalation step's calls: the next step's delay counts from now, or it is due at
    // once when this step failed (its delay was the guest's chance after a step that did not happen).
    internal static DevicePolicyState AfterStep(DevicePolicyState state, PolicyDecision decision, IReadOnlyList<ActionOutcome> outcomes, DateTimeOffset now)
    {
        if (decision.EscalationStep is not { } mark || state.Escalation is not { } escalation
            || escalation.TriggerSequence != mark.TriggerSequence || escalation.Done != mark.Step || escalation.Kind != mark.Kind)
        {
            return state;
        }

        bool failed = outcomes.Count > 0 && !outcomes[^1].Succeeded;
        return state with { Escalation = escalation with { Due = failed ? now : now + escalation.Next.After } };
    }

    // An escalation an earlier run journaled after its step 'done' (PolicyService.Recovery.cs),
    // rebuilt from its plan text: the steps left, the next due at 'due' but never later than its
    // own delay from now (the journal is untrusted). Null, with why, when the plan is not a valid
    // policy sequence of that kind (VirtioPanicOptionsValidator's rules), the step is out of range,
    // or the rest of the record does not match the plan. The trigger event is not journaled: the
    // later steps' calls name none.
    internal static Escalation? Resume(EscalationKind kind, string plan, long triggerSequence, int done, int stepCount, string nextAction, DateTimeOffset due, ImmutableArray<uint> vcpus, DateTimeOffset now, out string? error)
    {
        ImmutableArray<EscalationStepPlan> later;
        string canonical;
        DevicePolicy check;
        if (kind == EscalationKind.Panic)
        {
            if (!EscalationText.TryParse(plan, PanicAction.LogOnly, out PanicAction first, out List<(TimeSpan After, PanicAction Action)> rest, out error))
            {
                error = $"the journal's plan '{plan}' does not parse: {error}";
                return null;
            }

            PanicStep[] steps = [.. rest.Select(r => new PanicStep(r.After, r.Action))];
            check = new DevicePolicy { OnPanic = first, PanicEscalation = steps };
            canonical = EscalationText.Plan(first, steps);
            later = [.. steps.Select(r => new EscalationStepPlan(r.After, DecidedAction.Panic(r.Action), PanicSteps(r.Action)))];
        }
        else
        {
            if (!EscalationText.TryParse(plan, WatchdogAction.None, out WatchdogAction first, out List<(TimeSpan After, WatchdogAction Action)> rest, out error))
            {
                error = $"the journal's plan '{plan}' does not parse: {error}";
                return null;
            }

            WatchdogStep[] steps = [.. rest.Select(r => new WatchdogStep(r.After, r.Action))];
            check = kind == EscalationKind.Watchdog ? new DevicePolicy { OnWatchdog = first, WatchdogEscalation = steps } : new DevicePolicy { OnVcpuStall = first, VcpuStallEscalation = steps };
            canonical = EscalationText.Plan(first, steps);
            later = [.. steps.Select(r => new EscalationStepPlan(r.After, DecidedAction.Watchdog(r.Action), WatchdogSteps(r.Action)))];
        }

        var failures = new List<string>();
        VirtioPanicOptionsValidator.ValidatePolicy(check, "plan", failures);
        error = failures.Count > 0 ? $"the journal's plan '{plan}' is not a valid sequence: {string.Join(" ", failures)}"
            : later.IsEmpty ? $"the journal's plan '{plan}' has no later step"
            : stepCount != later.Length + 1 ? $"the journal says {stepCount} steps; the plan '{plan}' has {later.Length + 1}"
            : done < 1 || done >= stepCount ? $"the journal's step {done} of {stepCount} leaves no step to resume"
            : !string.Equals(later[done - 1].Action.Name, nextAction, StringComparison.Ordinal) ? $"the journal says '{nextAction}' is next; step {done + 1} of the plan '{plan}' is {later[done - 1].Action.Name}"
            : kind == EscalationKind.VcpuStall && vcpus.IsEmpty ? "a vcpu-stall escalation without stalled vCPUs"
            : kind != EscalationKind.VcpuStall && !vcpus.IsEmpty ? $"a {KindName(kind)} escalation with vCPUs"
            : null;
        if (error is not null)
        {
            return null;
        }

        DateTimeOffset latest = now + later[done - 1].After;
        return new Escalation
        {
            Kind = kind,
            Plan = canonical,
            TriggerSequence = triggerSequence,
            Later = later,
            Done = done,
            Due = due < latest ? due : latest,
            Vcpus = [.. vcpus.Distinct()],
        };
    }

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
        var decision = new PolicyDecision
        {
            State = state with { Deadline = null, Condition = GuestCondition.Panicked },
            Action = DecidedAction.Panic(action),
            Steps = PanicSteps(action),
            Note = note,
        };
        return deadline.Kind == PendingDeadlineKind.PanicGrace && !state.StormGuard
            ? BeginPanic(decision, policy, deadline.TriggerSequence, trigger: null, now)
            : decision;
    }

    // Management Continue: resume a VM the policy paused and clear the panicked state.
    internal static PolicyDecision OnContinue(DevicePolicyState state)
    {
        state = Cancel(state, s_allKinds, "continue", "a management continue", out CancelledEscalation? cancelled);
        return WithCancel(Continue(state), cancelled);
    }

    private static PolicyDecision Continue(DevicePolicyState state)
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
    internal static PolicyDecision OnGuestReset(DevicePolicyState state)
    {
        state = Cancel(state, s_allKinds, "guest-reset", "the hypervisor reported a guest reset", out CancelledEscalation? cancelled);
        return WithCancel(OnGuestFinished(state, "hypervisor reported a guest reset") with { Action = DecidedAction.GuestReset }, cancelled);
    }

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

        var decision = new PolicyDecision
        {
            State = next with { Deadline = null },
            Action = DecidedAction.Panic(action),
            Steps = PanicSteps(action),
            StormTripped = newlyTripped,
            Note = newlyTripped
                ? $"panic storm: {recent.Length} panics within {policy.StormWindow}; panic action switched from {PolicyNames.Of(policy.OnPanic)} to preserve until the policy is set again"
                : null,
        };
        return tripped ? decision : BeginPanic(decision, policy, panic.Sequence, panic, now);
    }

    private static PolicyDecision OnExpired(DevicePolicyState state, DevicePolicy policy, WatchdogExpiredEvent expired, DateTimeOffset now)
    {
        return WatchdogVocabulary(state, policy.OnWatchdog, policy.WatchdogEscalation, EscalationKind.Watchdog, expired, [], now);
    }

    // A policy in the watchdog vocabulary (OnWatchdog, OnVcpuStall): its first step now, and when
    // it is a sequence, the escalation that runs the later ones.
    private static PolicyDecision WatchdogVocabulary(DevicePolicyState state, WatchdogAction first, IReadOnlyList<WatchdogStep> escalation, EscalationKind kind, WatchdogEvent trigger, ImmutableArray<uint> vcpus, DateTimeOffset now)
    {
        var decision = new PolicyDecision
        {
            State = state,
            Action = DecidedAction.Watchdog(first),
            Steps = WatchdogSteps(first),
        };
        if (escalation.Count == 0)
        {
            return decision;
        }

        ImmutableArray<EscalationStepPlan> later = [.. escalation.Select(s => new EscalationStepPlan(s.After, DecidedAction.Watchdog(s.Action), WatchdogSteps(s.Action)))];
        return Begin(decision, kind, EscalationText.Plan(first, escalation), trigger.Sequence, trigger, later, vcpus, now);
    }

    // Stage two of a vCPU stall: the stall policy, unless a stall escalation is in progress, which this vCPU joins.
    private static PolicyDecision OnVcpuStallExpired(DevicePolicyState state, DevicePolicy policy, VcpuStallExpiredEvent stall, DateTimeOffset now)
    {
        uint vcpu = (uint)stall.Vcpu;
        if (state.Escalation is { Kind: EscalationKind.VcpuStall } running)
        {
            return new PolicyDecision
            {
                State = running.Vcpus.Contains(vcpu) ? state : state with { Escalation = running with { Vcpus = running.Vcpus.Add(vcpu) } },
                Action = DecidedAction.Log,
                Note = $"vCPU {vcpu} stalled too; it joins the vcpu-stall escalation '{running.Plan}' (step {running.Done} of {running.StepCount} done)",
            };
        }

        return WatchdogVocabulary(state, policy.OnVcpuStall, policy.VcpuStallEscalation, EscalationKind.VcpuStall, stall, [vcpu], now);
    }

    // A stalled vCPU pet again: a stall escalation waiting for it ends when no stalled vCPU is left.
    private static PolicyDecision OnVcpuRecovered(DevicePolicyState state, VcpuRecoveredEvent recovered)
    {
        uint vcpu = (uint)recovered.Vcpu;
        if (state.Escalation is not { Kind: EscalationKind.VcpuStall } running || !running.Vcpus.Contains(vcpu))
        {
            return new PolicyDecision { State = state, Action = DecidedAction.Log };
        }

        ImmutableArray<uint> left = running.Vcpus.Remove(vcpu);
        if (!left.IsEmpty)
        {
            return new PolicyDecision
            {
                State = state with { Escalation = running with { Vcpus = left } },
                Action = DecidedAction.Log,
                Note = $"vCPU {vcpu} recovered; the vcpu-stall escalation '{running.Plan}' still waits for vCPU {string.Join(", ", left)}",
            };
        }

        DevicePolicyState cancelled = Cancel(state, EscalationKind.VcpuStall, "recovered", $"vCPU {vcpu} pets again", out CancelledEscalation? why);
        return WithCancel(new PolicyDecision { State = cancelled, Action = DecidedAction.Log }, why);
    }

    // A panic action applied now (at once, or when the grace window ended): with a sequence, it is its first step.
    private static PolicyDecision BeginPanic(PolicyDecision decision, DevicePolicy policy, long triggerSequence, WatchdogEvent? trigger, DateTimeOffset now)
    {
        if (policy.PanicEscalation.Count == 0)
        {
            return decision;
        }

        ImmutableArray<EscalationStepPlan> later = [.. policy.PanicEscalation.Select(s => new EscalationStepPlan(s.After, DecidedAction.Panic(s.Action), PanicSteps(s.Action)))];
        return Begin(decision, EscalationKind.Panic, EscalationText.Plan(policy.OnPanic, policy.PanicEscalation), triggerSequence, trigger, later, [], now);
    }

    // Makes a first step's decision the start of an escalation; one in progress is replaced (superseded).
    private static PolicyDecision Begin(PolicyDecision first, EscalationKind kind, string plan, long triggerSequence, WatchdogEvent? trigger, ImmutableArray<EscalationStepPlan> later, ImmutableArray<uint> vcpus, DateTimeOffset now)
    {
        DevicePolicyState state = Cancel(first.State, s_allKinds, "superseded", $"a new {KindName(kind)} escalation (sequence {triggerSequence}) replaced it", out CancelledEscalation? superseded);
        var escalation = new Escalation
        {
            Kind = kind,
            Plan = plan,
            TriggerSequence = triggerSequence,
            Trigger = trigger,
            Later = later,
            Due = now + later[0].After,
            Vcpus = vcpus,
        };
        string note = $"{KindName(kind)} escalation '{plan}': step 1 of {escalation.StepCount} ({first.Action.Name}); {later[0].Action.Name} in {EscalationText.Delay(later[0].After)} unless {Recovery(escalation)}";
        return WithCancel(
            first with
            {
                State = state with { Escalation = escalation },
                EscalationStep = escalation.Mark(1),
                Fallbacks = false,
                Note = first.Note is null ? note : $"{first.Note}; {note}",
            },
            superseded);
    }

    private static readonly EscalationKind[] s_allKinds = [EscalationKind.Watchdog, EscalationKind.Panic, EscalationKind.VcpuStall];

    private static DevicePolicyState Cancel(DevicePolicyState state, EscalationKind kind, string code, string reason, out CancelledEscalation? cancelled) =>
        Cancel(state, [kind], code, reason, out cancelled);

    // Ends the escalation in progress when it is of one of the kinds; says which step it stopped before.
    private static DevicePolicyState Cancel(DevicePolicyState state, ReadOnlySpan<EscalationKind> kinds, string code, string reason, out CancelledEscalation? cancelled)
    {
        cancelled = null;
        if (state.Escalation is not { } escalation || !kinds.Contains(escalation.Kind))
        {
            return state;
        }

        cancelled = new CancelledEscalation(escalation.Mark(escalation.Done + 1), escalation.Next.Action.Name, code, reason);
        return state with { Escalation = null };
    }

    // Adds the cancellation to a decision (and to its note).
    private static PolicyDecision WithCancel(PolicyDecision decision, CancelledEscalation? cancelled)
    {
        if (cancelled is not { } c)
        {
            return decision;
        }

        string note = $"{KindName(c.Next.Kind)} escalation '{c.Next.Plan}' cancelled before step {c.Next.Step} of {c.Next.StepCount} ({c.NextAction}): {c.Reason}";
        return decision with { Cancelled = c, Note = decision.Note is null ? note : $"{note}; {decision.Note}" };
    }

    internal static string KindName(EscalationKind kind) => kind switch
    {
        EscalationKind.Watchdog => "watchdog",
        EscalationKind.Panic => "panic",
        _ => "vcpu-stall",
    };

    private static string Recovery(Escalation escalation) => escalation.Kind switch
    {
        EscalationKind.Watchdog => "the watchdog is armed again",
        EscalationKind.Panic => "the guest reboots",
        _ => escalation.Vcpus.Length == 1 ? $"vCPU {escalation.Vcpus[0]} pets again" : $"vCPUs {string.Join(", ", escalation.Vcpus)} pet again",
    };

    private static string Without(Escalation escalation) => escalation.Kind switch
    {
        EscalationKind.Watchdog => "without a keepalive",
        EscalationKind.Panic => "without a guest reboot",
        _ => "without the stalled vCPU petting again",
    };

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
