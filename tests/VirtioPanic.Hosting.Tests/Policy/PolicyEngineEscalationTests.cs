using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Hosting.Tests.Policy;

// Staged escalation as pure decisions: which step runs when, what cancels the rest, with time
// from a FakeTimeProvider.
public sealed class PolicyEngineEscalationTests
{
    private static readonly DevicePolicy s_watchdog = new()
    {
        OnWatchdog = WatchdogAction.InjectNmi,
        WatchdogEscalation = [new(TimeSpan.FromSeconds(10), WatchdogAction.Dump), new(TimeSpan.FromSeconds(10), WatchdogAction.Reset)],
    };

    private static readonly DevicePolicy s_panic = new()
    {
        OnPanic = PanicAction.LogOnly,
        PanicEscalation = [new(TimeSpan.FromSeconds(30), PanicAction.Preserve), new(TimeSpan.FromMinutes(5), PanicAction.Destroy)],
    };

    private static readonly DevicePolicy s_stall = new()
    {
        OnVcpuStall = WatchdogAction.InjectNmi,
        VcpuStallEscalation = [new(TimeSpan.FromSeconds(5), WatchdogAction.Reset)],
    };

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 6, 1, 12, 0, 0, TimeSpan.Zero));
    private long _sequence;

    [Test]
    public void OnEvent_ExpiryWithASequence_RunsTheFirstStepAndSchedulesTheSecond()
    {
        DateTimeOffset now = _time.GetUtcNow();
        WatchdogExpiredEvent expired = Expired();
        PolicyDecision decision = PolicyEngine.OnEvent(DevicePolicyState.Initial, s_watchdog, expired, now);

        Escalation escalation = decision.State.Escalation!;
        Assert.Multiple(() =>
        {
            Assert.That(decision.Steps.Select(s => s.Operation), Is.EqualTo(new[] { VmOperation.InjectNmi }));
            Assert.That(decision.Action.Name, Is.EqualTo("inject-nmi"));
            Assert.That(decision.Fallbacks, Is.False, "a failed first step goes on with the next, not with the NMI's fallback");
            Assert.That(decision.EscalationStep, Is.EqualTo(new EscalationMark(EscalationKind.Watchdog, "inject-nmi; 10s dump; 10s reset", expired.Sequence, 1, 3)));
            Assert.That((escalation.Done, escalation.Due, escalation.Next.Action.Name), Is.EqualTo((1, now + TimeSpan.FromSeconds(10), "dump")));
            Assert.That(decision.Note, Does.Contain("step 1 of 3").And.Contain("dump in 10s"));
        });
    }

    [Test]
    public void OnEscalationDue_EachStepAtItsTime_ThenTheEscalationEnds()
    {
        DateTimeOffset start = _time.GetUtcNow();
        DevicePolicyState state = PolicyEngine.OnEvent(DevicePolicyState.Initial, s_watchdog, Expired(), start).State;

        PolicyDecision early = PolicyEngine.OnEscalationDue(state, start + TimeSpan.FromSeconds(9.999), watchdogArmed: false);
        PolicyDecision dump = PolicyEngine.OnEscalationDue(state, start + TimeSpan.FromSeconds(10), watchdogArmed: false);
        DevicePolicyState afterDump = PolicyEngine.AfterStep(dump.State, dump, [Ok(VmOperation.DumpGuestMemory)], start + TimeSpan.FromSeconds(14));
        PolicyDecision tooSoon = PolicyEngine.OnEscalationDue(afterDump, start + TimeSpan.FromSeconds(23.9), watchdogArmed: false);
        PolicyDecision reset = PolicyEngine.OnEscalationDue(afterDump, start + TimeSpan.FromSeconds(24), watchdogArmed: false);
        PolicyDecision after = PolicyEngine.OnEscalationDue(reset.State, start + TimeSpan.FromSeconds(100), watchdogArmed: false);

        Assert.Multiple(() =>
        {
            Assert.That(early.Action, Is.EqualTo(DecidedAction.Ignored));
            Assert.That((dump.Action.Name, dump.Steps.Single().Operation, dump.Fallbacks), Is.EqualTo(("dump", VmOperation.DumpGuestMemory, false)));
            Assert.That(dump.EscalationStep?.Step, Is.EqualTo(2));
            Assert.That(afterDump.Escalation!.Due, Is.EqualTo(start + TimeSpan.FromSeconds(24)), "the delay counts from when the dump finished");
            Assert.That(tooSoon.Action, Is.EqualTo(DecidedAction.Ignored));
            Assert.That((reset.Action.Name, reset.Fallbacks, reset.EscalationStep?.Step), Is.EqualTo(("reset", true, (int?)3)));
            Assert.That(reset.Steps.Single(), Is.EqualTo(new PlannedStep(VmOperation.Reset, WatchdogBootReason.Watchdog)));
            Assert.That(reset.State.Escalation, Is.Null, "the last step ends it");
            Assert.That(after.Action, Is.EqualTo(DecidedAction.Ignored), "no step runs twice");
        });
    }

    [Test]
    public void AfterStep_FailedStepWithStepsAfterIt_MakesTheNextDueAtOnce()
    {
        DateTimeOffset now = _time.GetUtcNow();
        PolicyDecision first = PolicyEngine.OnEvent(DevicePolicyState.Initial, s_watchdog, Expired(), now);

        DevicePolicyState state = PolicyEngine.AfterStep(first.State, first, [Failed(VmOperation.InjectNmi)], now + TimeSpan.FromSeconds(1));

        Assert.That(state.Escalation!.Due, Is.EqualTo(now + TimeSpan.FromSeconds(1)));
    }

    [Test]
    public void OnEscalationDue_WatchdogArmedAgain_CancelsInsteadOfActing()
    {
        DateTimeOffset now = _time.GetUtcNow();
        DevicePolicyState state = PolicyEngine.OnEvent(DevicePolicyState.Initial, s_watchdog, Expired(), now).State;

        PolicyDecision decision = PolicyEngine.OnEscalationDue(state, now + TimeSpan.FromSeconds(10), watchdogArmed: true);

        Assert.Multiple(() =>
        {
            Assert.That((decision.Action, decision.Steps.Length, decision.State.Escalation), Is.EqualTo((DecidedAction.Cancelled, 0, (Escalation?)null)));
            Assert.That(decision.Cancelled?.Code, Is.EqualTo("recovered"));
            Assert.That((decision.Cancelled?.Next.Step, decision.Cancelled?.NextAction), Is.EqualTo(((int?)2, "dump")));
        });
    }

    [TestCase("armed", "recovered")]
    [TestCase("panic", "panic")]
    [TestCase("crash-loaded", "crash-loaded")]
    [TestCase("driver-reset", "driver-reset")]
    [TestCase("shutdown", "shutdown")]
    public void OnEvent_GuestRecoversOrTakesOver_CancelsTheWatchdogEscalation(string what, string code)
    {
        DevicePolicyState state = PolicyEngine.OnEvent(DevicePolicyState.Initial, s_watchdog, Expired(), _time.GetUtcNow()).State;
        WatchdogEvent evt = what switch
        {
            "armed" => new WatchdogArmedEvent { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Timeout = TimeSpan.FromSeconds(5), ByHeartbeat = true },
            "panic" => Panic(),
            "crash-loaded" => new GuestCrashLoadedEvent { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Source = WatchdogEventSource.ConfigField },
            "driver-reset" => new DriverResetEvent { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow() },
            _ => new GuestShutdownEvent { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Source = WatchdogEventSource.ConfigField },
        };

        PolicyDecision decision = PolicyEngine.OnEvent(state, s_watchdog, evt, _time.GetUtcNow());

        Assert.Multiple(() =>
        {
            Assert.That(decision.State.Escalation, Is.Null);
            Assert.That(decision.Cancelled?.Code, Is.EqualTo(code));
            Assert.That(decision.Note, Does.Contain("cancelled before step 2 of 3 (dump)"));
        });
    }

    [Test]
    public void OnEvent_PanicAfterTheNmi_TheWatchdogEscalationEndsAndThePanicPolicyActs()
    {
        DevicePolicy policy = s_watchdog with { OnPanic = PanicAction.CoredumpRestart };
        DevicePolicyState state = PolicyEngine.OnEvent(DevicePolicyState.Initial, policy, Expired(), _time.GetUtcNow()).State;

        PolicyDecision decision = PolicyEngine.OnEvent(state, policy, Panic(), _time.GetUtcNow());

        Assert.That((decision.Action.Name, decision.Steps.Length, decision.State.Escalation, decision.Cancelled?.Code), Is.EqualTo(("coredump-restart", 2, (Escalation?)null, "panic")));
    }

    [Test]
    public void OnEvent_ManagementContinueAndGuestReset_CancelAnyEscalation()
    {
        DevicePolicyState state = PolicyEngine.OnEvent(DevicePolicyState.Initial, s_watchdog, Expired(), _time.GetUtcNow()).State;

        PolicyDecision resumed = PolicyEngine.OnContinue(state);
        PolicyDecision reset = PolicyEngine.OnGuestReset(state);

        Assert.That((resumed.Cancelled?.Code, resumed.State.Escalation, reset.Cancelled?.Code, reset.State.Escalation), Is.EqualTo(("continue", (Escalation?)null, "guest-reset", (Escalation?)null)));
    }

    [Test]
    public void OnEvent_NewExpiryDuringAnEscalation_StartsItOverFromStepOne()
    {
        DevicePolicyState state = PolicyEngine.OnEvent(DevicePolicyState.Initial, s_watchdog, Expired(), _time.GetUtcNow()).State;
        state = PolicyEngine.OnEscalationDue(state, _time.GetUtcNow() + TimeSpan.FromSeconds(10), watchdogArmed: false).State;
        _time.Advance(TimeSpan.FromSeconds(12));

        WatchdogExpiredEvent again = Expired();
        PolicyDecision decision = PolicyEngine.OnEvent(state, s_watchdog, again, _time.GetUtcNow());

        Assert.Multiple(() =>
        {
            Assert.That(decision.Action.Name, Is.EqualTo("inject-nmi"));
            Assert.That(decision.Cancelled?.Code, Is.EqualTo("superseded"));
            Assert.That((decision.State.Escalation!.TriggerSequence, decision.State.Escalation.Done), Is.EqualTo((again.Sequence, 1)));
        });
    }

    [Test]
    public void OnEvent_SingleActionPolicies_StartNoEscalation()
    {
        PolicyDecision expiry = PolicyEngine.OnEvent(DevicePolicyState.Initial, new DevicePolicy { OnWatchdog = WatchdogAction.InjectNmi }, Expired(), _time.GetUtcNow());
        PolicyDecision panic = PolicyEngine.OnEvent(DevicePolicyState.Initial, new DevicePolicy(), Panic(), _time.GetUtcNow());

        Assert.That((expiry.State.Escalation, expiry.EscalationStep, expiry.Fallbacks, panic.State.Escalation, panic.Fallbacks), Is.EqualTo(((Escalation?)null, (EscalationMark?)null, true, (Escalation?)null, true)));
    }

    [Test]
    public void OnEvent_PanicWithASequence_LogsFirstThenEscalatesUnlessTheGuestReboots()
    {
        DateTimeOffset now = _time.GetUtcNow();
        PolicyDecision first = PolicyEngine.OnEvent(DevicePolicyState.Initial, s_panic, Panic(), now);
        PolicyDecision armed = PolicyEngine.OnEvent(first.State, s_panic, new WatchdogArmedEvent { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = now, Timeout = TimeSpan.FromSeconds(5) }, now);
        PolicyDecision preserve = PolicyEngine.OnEscalationDue(first.State, now + TimeSpan.FromSeconds(30), watchdogArmed: true);
        PolicyDecision rebooted = PolicyEngine.OnEvent(preserve.State, s_panic, new DriverResetEvent { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = now }, now);

        Assert.Multiple(() =>
        {
            Assert.That((first.Action.Name, first.Steps.Length, first.State.Escalation?.Kind), Is.EqualTo(("log-only", 0, (EscalationKind?)EscalationKind.Panic)));
            Assert.That(armed.State.Escalation, Is.SameAs(first.State.Escalation), "a watchdog re-arm is no reboot");
            Assert.That((preserve.Action.Name, preserve.Steps.Single().Operation), Is.EqualTo(("preserve", VmOperation.Pause)), "an armed watchdog does not cancel a panic escalation");
            Assert.That((rebooted.State.Escalation, rebooted.Cancelled?.Code), Is.EqualTo(((Escalation?)null, "driver-reset")));
        });
    }

    [Test]
    public void OnDeadline_PanicGraceThenSequence_TheGraceDelaysTheFirstStep()
    {
        DevicePolicy policy = s_panic with { OnPanic = PanicAction.Preserve, PanicGracePeriod = TimeSpan.FromSeconds(20), PanicEscalation = [new(TimeSpan.FromMinutes(5), PanicAction.Destroy)] };
        DateTimeOffset now = _time.GetUtcNow();
        PolicyDecision grace = PolicyEngine.OnEvent(DevicePolicyState.Initial, policy, Panic(), now);

        PolicyDecision fired = PolicyEngine.OnDeadline(grace.State, policy, now + TimeSpan.FromSeconds(20));

        Assert.Multiple(() =>
        {
            Assert.That((grace.Action, grace.State.Escalation), Is.EqualTo((DecidedAction.Grace, (Escalation?)null)));
            Assert.That((fired.Action.Name, fired.State.Escalation?.Due), Is.EqualTo(("preserve", (DateTimeOffset?)(now + TimeSpan.FromSeconds(20) + TimeSpan.FromMinutes(5)))));
        });
    }

    [Test]
    public void OnEvent_StormGuardTripped_PreservesWithoutEscalating()
    {
        DevicePolicy policy = s_panic with { StormThreshold = 2 };
        DevicePolicyState state = PolicyEngine.OnEvent(DevicePolicyState.Initial, policy, Panic(), _time.GetUtcNow()).State;

        PolicyDecision tripped = PolicyEngine.OnEvent(state, policy, Panic(), _time.GetUtcNow());

        Assert.That((tripped.Action.Name, tripped.StormTripped, tripped.State.Escalation), Is.EqualTo(("preserve", true, (Escalation?)null)));
    }

    [Test]
    public void OnEvent_VcpuStallExpiry_OtherStalledVcpusJoin_AndItEndsOnlyWhenAllRecovered()
    {
        DateTimeOffset now = _time.GetUtcNow();
        PolicyDecision first = PolicyEngine.OnEvent(DevicePolicyState.Initial, s_stall, StallExpired(1), now);
        PolicyDecision second = PolicyEngine.OnEvent(first.State, s_stall, StallExpired(3), now);
        PolicyDecision oneBack = PolicyEngine.OnEvent(second.State, s_stall, Recovered(1), now);
        PolicyDecision otherBack = PolicyEngine.OnEvent(oneBack.State, s_stall, Recovered(2), now);
        PolicyDecision allBack = PolicyEngine.OnEvent(oneBack.State, s_stall, Recovered(3), now);

        Assert.Multiple(() =>
        {
            Assert.That((first.Action.Name, first.State.Escalation?.Kind), Is.EqualTo(("inject-nmi", (EscalationKind?)EscalationKind.VcpuStall)));
            Assert.That((second.Action, second.Steps.Length), Is.EqualTo((DecidedAction.Log, 0)), "a second stall joins instead of injecting again");
            Assert.That(second.State.Escalation!.Vcpus, Is.EqualTo(new uint[] { 1, 3 }));
            Assert.That(oneBack.State.Escalation!.Vcpus, Is.EqualTo(new uint[] { 3 }));
            Assert.That(oneBack.Cancelled, Is.Null);
            Assert.That(otherBack.State.Escalation, Is.SameAs(oneBack.State.Escalation), "a vCPU it does not wait for changes nothing");
            Assert.That((allBack.State.Escalation, allBack.Cancelled?.Code), Is.EqualTo(((Escalation?)null, "recovered")));
        });
    }

    [Test]
    public void OnEvent_VcpuStallSingleAction_ActsOnEveryExpiry_AndTheStalledEventOnlyLogs()
    {
        var policy = new DevicePolicy { OnVcpuStall = WatchdogAction.Reset };
        PolicyDecision stalled = PolicyEngine.OnEvent(DevicePolicyState.Initial, policy, new VcpuStalledEvent { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Vcpu = 1, StalledFor = TimeSpan.FromSeconds(10), Timeout = TimeSpan.FromSeconds(10), SecondStage = TimeSpan.FromSeconds(10) }, _time.GetUtcNow());
        PolicyDecision expired = PolicyEngine.OnEvent(DevicePolicyState.Initial, policy, StallExpired(1), _time.GetUtcNow());

        Assert.Multiple(() =>
        {
            Assert.That((stalled.Action, stalled.Steps.Length), Is.EqualTo((DecidedAction.Log, 0)));
            Assert.That(expired.Steps.Single(), Is.EqualTo(new PlannedStep(VmOperation.Reset, WatchdogBootReason.Watchdog)));
            Assert.That(expired.State.Escalation, Is.Null);
        });
    }

    [Test]
    public void OnEvent_VcpuRecoveryDuringAWatchdogEscalation_ChangesNothing()
    {
        DevicePolicyState state = PolicyEngine.OnEvent(DevicePolicyState.Initial, s_watchdog, Expired(), _time.GetUtcNow()).State;

        PolicyDecision decision = PolicyEngine.OnEvent(state, s_watchdog, Recovered(0), _time.GetUtcNow());

        Assert.That(decision.State, Is.SameAs(state));
    }

    private static ActionOutcome Ok(VmOperation operation) => new() { Operation = operation, Succeeded = true, Duration = TimeSpan.Zero };

    private static ActionOutcome Failed(VmOperation operation) => new() { Operation = operation, Succeeded = false, Error = "no", Duration = TimeSpan.Zero };

    private GuestPanickedEvent Panic() => new() { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Source = WatchdogEventSource.ConfigField };

    private WatchdogExpiredEvent Expired() => new() { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Timeout = TimeSpan.FromSeconds(5) };

    private VcpuStallExpiredEvent StallExpired(int vcpu) => new() { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Vcpu = vcpu, VcpuId = (uint)vcpu, SinceStall = TimeSpan.FromSeconds(10), StalledFor = TimeSpan.FromSeconds(10) };

    private VcpuRecoveredEvent Recovered(int vcpu) => new() { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Vcpu = vcpu, VcpuId = (uint)vcpu, SinceStall = TimeSpan.FromSeconds(1) };
}
