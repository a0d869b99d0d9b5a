using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Hosting.Tests.Policy;

// The policy as pure functions: every decision from (state, policy, input, now), with time from a FakeTimeProvider.
public sealed class PolicyEngineTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 6, 1, 12, 0, 0, TimeSpan.Zero));
    private long _sequence;

    [TestCase(PanicAction.Destroy, new[] { VmOperation.PowerOff })]
    [TestCase(PanicAction.Restart, new[] { VmOperation.Reset })]
    [TestCase(PanicAction.Preserve, new[] { VmOperation.Pause })]
    [TestCase(PanicAction.CoredumpDestroy, new[] { VmOperation.DumpGuestMemory, VmOperation.PowerOff })]
    [TestCase(PanicAction.CoredumpRestart, new[] { VmOperation.DumpGuestMemory, VmOperation.Reset })]
    [TestCase(PanicAction.LogOnly, new VmOperation[0])]
    public void OnEvent_Panic_PlansTheActionsSteps(PanicAction action, VmOperation[] expected)
    {
        PolicyDecision decision = PolicyEngine.OnEvent(DevicePolicyState.Initial, new DevicePolicy { OnPanic = action }, Panic(), _time.GetUtcNow());

        Assert.Multiple(() =>
        {
            Assert.That(decision.Steps.Select(s => s.Operation), Is.EqualTo(expected));
            Assert.That(decision.Action.Name, Is.EqualTo(PolicyNames.Of(action)));
            Assert.That(decision.Steps.Where(s => s.Operation == VmOperation.Reset).Select(s => s.BootReason), Is.All.EqualTo(WatchdogBootReason.Panic));
            Assert.That(decision.State.Condition, Is.EqualTo(GuestCondition.Panicked));
        });
    }

    [TestCase(WatchdogAction.Reset, new[] { VmOperation.Reset })]
    [TestCase(WatchdogAction.Shutdown, new[] { VmOperation.RequestShutdown })]
    [TestCase(WatchdogAction.Poweroff, new[] { VmOperation.PowerOff })]
    [TestCase(WatchdogAction.Pause, new[] { VmOperation.Pause })]
    [TestCase(WatchdogAction.Dump, new[] { VmOperation.DumpGuestMemory })]
    [TestCase(WatchdogAction.InjectNmi, new[] { VmOperation.InjectNmi })]
    [TestCase(WatchdogAction.None, new VmOperation[0])]
    public void OnEvent_Expiry_PlansTheActionsSteps(WatchdogAction action, VmOperation[] expected)
    {
        PolicyDecision decision = PolicyEngine.OnEvent(DevicePolicyState.Initial, new DevicePolicy { OnWatchdog = action }, Expired(), _time.GetUtcNow());

        Assert.Multiple(() =>
        {
            Assert.That(decision.Steps.Select(s => s.Operation), Is.EqualTo(expected));
            Assert.That(decision.Action.Name, Is.EqualTo(PolicyNames.Of(action)));
            Assert.That(decision.Steps.Where(s => s.Operation == VmOperation.Reset).Select(s => s.BootReason), Is.All.EqualTo(WatchdogBootReason.Watchdog));
        });
    }

    [Test]
    public void OnEvent_PretimeoutArmedStoppedProtocolError_OnlyLog()
    {
        DevicePolicyState state = DevicePolicyState.Initial;
        WatchdogEvent[] events =
        [
            new WatchdogPretimeoutEvent { DeviceId = "d", Sequence = 1, VmRunTime = default, HostTime = _time.GetUtcNow(), TimeLeft = TimeSpan.FromSeconds(1), Timeout = TimeSpan.FromSeconds(5), Pretimeout = TimeSpan.FromSeconds(2) },
            new WatchdogArmedEvent { DeviceId = "d", Sequence = 2, VmRunTime = default, HostTime = _time.GetUtcNow(), Timeout = TimeSpan.FromSeconds(5) },
            new WatchdogStoppedEvent { DeviceId = "d", Sequence = 3, VmRunTime = default, HostTime = _time.GetUtcNow(), Reason = WatchdogStopReason.DriverStop },
            new GuestProtocolErrorEvent { DeviceId = "d", Sequence = 4, VmRunTime = default, HostTime = _time.GetUtcNow(), Detail = "x", Error = WatchdogProtocolError.MalformedRecord, QueueIndex = 1 },
        ];

        foreach (WatchdogEvent evt in events)
        {
            PolicyDecision decision = PolicyEngine.OnEvent(state, new DevicePolicy(), evt, _time.GetUtcNow());
            Assert.That((decision.Action, decision.Steps.Length, decision.State), Is.EqualTo((DecidedAction.Log, 0, state)), evt.Kind.ToString());
        }
    }

    [Test]
    public void OnEvent_CrashLoadedWithoutDeadline_LogsAndLetsTheGuestRun()
    {
        PolicyDecision decision = PolicyEngine.OnEvent(DevicePolicyState.Initial, new DevicePolicy(), CrashLoaded(), _time.GetUtcNow());

        Assert.That((decision.Action, decision.Steps.Length, decision.State.Condition, decision.State.Deadline), Is.EqualTo((DecidedAction.Log, 0, GuestCondition.CrashKernel, (PendingDeadline?)null)));
    }

    [Test]
    public void CrashKernelDeadline_MissedDeadline_AppliesItsOwnAction()
    {
        var policy = new DevicePolicy { OnPanic = PanicAction.Destroy, CrashKernelDeadline = TimeSpan.FromMinutes(2), OnCrashKernelTimeout = PanicAction.CoredumpRestart };
        PolicyDecision armed = PolicyEngine.OnEvent(DevicePolicyState.Initial, policy, CrashLoaded(), _time.GetUtcNow());
        Assert.That(armed.State.Deadline, Is.EqualTo(new PendingDeadline(PendingDeadlineKind.CrashKernel, _time.GetUtcNow() + TimeSpan.FromMinutes(2), _sequence)));
        Assert.That(armed.Steps, Is.Empty);

        _time.Advance(TimeSpan.FromSeconds(119));
        Assert.That(PolicyEngine.OnDeadline(armed.State, policy, _time.GetUtcNow()).Action, Is.EqualTo(DecidedAction.Ignored), "early timer");

        _time.Advance(TimeSpan.FromSeconds(1));
        PolicyDecision fired = PolicyEngine.OnDeadline(armed.State, policy, _time.GetUtcNow());
        Assert.Multiple(() =>
        {
            Assert.That(fired.Steps.Select(s => s.Operation), Is.EqualTo(new[] { VmOperation.DumpGuestMemory, VmOperation.Reset }));
            Assert.That(fired.Action.Name, Is.EqualTo("coredump-restart"));
            Assert.That(fired.State.Deadline, Is.Null);
        });
    }

    [Test]
    public void CrashKernelDeadline_ShutdownReportedFirst_IsCancelled()
    {
        var policy = new DevicePolicy { CrashKernelDeadline = TimeSpan.FromMinutes(2) };
        PolicyDecision armed = PolicyEngine.OnEvent(DevicePolicyState.Initial, policy, CrashLoaded(), _time.GetUtcNow());
        PolicyDecision shutdown = PolicyEngine.OnEvent(armed.State, policy, Shutdown(), _time.GetUtcNow());
        _time.Advance(TimeSpan.FromMinutes(3));

        Assert.Multiple(() =>
        {
            Assert.That(shutdown.State.Deadline, Is.Null);
            Assert.That(shutdown.Note, Does.Contain("crash kernel finished"));
            Assert.That(PolicyEngine.OnDeadline(shutdown.State, policy, _time.GetUtcNow()).Steps, Is.Empty);
        });
    }

    [Test]
    public void GraceWindow_Panic_DefersTheActionToTheDeadline()
    {
        var policy = new DevicePolicy { OnPanic = PanicAction.Restart, PanicGracePeriod = TimeSpan.FromSeconds(30) };
        PolicyDecision panic = PolicyEngine.OnEvent(DevicePolicyState.Initial, policy, Panic(), _time.GetUtcNow());
        Assert.That((panic.Action, panic.Steps.Length, panic.State.Deadline?.Kind), Is.EqualTo((DecidedAction.Grace, 0, (PendingDeadlineKind?)PendingDeadlineKind.PanicGrace)));

        _time.Advance(TimeSpan.FromSeconds(29.999));
        Assert.That(PolicyEngine.OnDeadline(panic.State, policy, _time.GetUtcNow()).Steps, Is.Empty);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        PolicyDecision fired = PolicyEngine.OnDeadline(panic.State, policy, _time.GetUtcNow());
        Assert.That(fired.Steps, Is.EqualTo(new[] { new PlannedStep(VmOperation.Reset, WatchdogBootReason.Panic) }));
    }

    [Test]
    public void GraceWindow_GuestResetsItself_CancelsTheAction()
    {
        var policy = new DevicePolicy { OnPanic = PanicAction.Destroy, PanicGracePeriod = TimeSpan.FromSeconds(30) };
        PolicyDecision panic = PolicyEngine.OnEvent(DevicePolicyState.Initial, policy, Panic(), _time.GetUtcNow());
        _time.Advance(TimeSpan.FromSeconds(10));
        PolicyDecision reset = PolicyEngine.OnEvent(panic.State, policy, new DriverResetEvent { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow() }, _time.GetUtcNow());
        _time.Advance(TimeSpan.FromSeconds(30));

        Assert.Multiple(() =>
        {
            Assert.That(reset.State.Deadline, Is.Null);
            Assert.That(reset.State.Condition, Is.EqualTo(GuestCondition.Running));
            Assert.That(reset.Note, Does.Contain("cancelled"));
            Assert.That(PolicyEngine.OnDeadline(reset.State, policy, _time.GetUtcNow()).Action, Is.EqualTo(DecidedAction.Ignored));
        });
    }

    [Test]
    public void GraceWindow_LogOnly_NeedsNoDeadline()
    {
        PolicyDecision decision = PolicyEngine.OnEvent(DevicePolicyState.Initial, new DevicePolicy { OnPanic = PanicAction.LogOnly, PanicGracePeriod = TimeSpan.FromSeconds(5) }, Panic(), _time.GetUtcNow());

        Assert.That((decision.Action.Name, decision.State.Deadline), Is.EqualTo(("log-only", (PendingDeadline?)null)));
    }

    [Test]
    public void StormGuard_ThresholdPanicsWithinWindow_SwitchToPreserveAndReport()
    {
        var policy = new DevicePolicy { OnPanic = PanicAction.Restart, StormThreshold = 3, StormWindow = TimeSpan.FromMinutes(1) };
        DevicePolicyState state = DevicePolicyState.Initial;
        var decisions = new List<PolicyDecision>();
        for (int i = 0; i < 4; i++)
        {
            PolicyDecision d = PolicyEngine.OnEvent(state, policy, Panic(), _time.GetUtcNow());
            decisions.Add(d);
            state = PolicyEngine.AfterExecution(d.State, [.. d.Steps.Select(s => new ActionOutcome { Operation = s.Operation, Succeeded = true, Duration = default })]);
            _time.Advance(TimeSpan.FromSeconds(20));
        }

        Assert.Multiple(() =>
        {
            Assert.That(decisions.Select(d => d.Action.Name), Is.EqualTo(new[] { "restart", "restart", "preserve", "preserve" }));
            Assert.That(decisions.Select(d => d.StormTripped), Is.EqualTo(new[] { false, false, true, false }), "reported once");
            Assert.That(decisions[2].Note, Does.Contain("panic storm"));
            Assert.That(PolicyEngine.EffectivePanicAction(state, policy), Is.EqualTo(PanicAction.Preserve));
            Assert.That(state.Condition, Is.EqualTo(GuestCondition.Paused));
        });
    }

    [Test]
    public void StormGuard_PanicsSpreadBeyondTheWindow_DoNotTrip()
    {
        var policy = new DevicePolicy { OnPanic = PanicAction.Restart, StormThreshold = 3, StormWindow = TimeSpan.FromMinutes(1) };
        DevicePolicyState state = DevicePolicyState.Initial;
        for (int i = 0; i < 10; i++)
        {
            PolicyDecision d = PolicyEngine.OnEvent(state, policy, Panic(), _time.GetUtcNow());
            Assert.That(d.Action.Name, Is.EqualTo("restart"), $"panic {i}");
            state = d.State;
            _time.Advance(TimeSpan.FromSeconds(31));
        }

        Assert.That(state.RecentPanics, Has.Length.LessThanOrEqualTo(3), "bounded memory");
    }

    [Test]
    public void StormGuard_ThresholdZero_IsOff()
    {
        var policy = new DevicePolicy { OnPanic = PanicAction.Restart, StormThreshold = 0 };
        DevicePolicyState state = DevicePolicyState.Initial;
        for (int i = 0; i < 20; i++)
        {
            PolicyDecision d = PolicyEngine.OnEvent(state, policy, Panic(), _time.GetUtcNow());
            Assert.That(d.Action.Name, Is.EqualTo("restart"));
            state = d.State;
        }

        Assert.That(state.RecentPanics, Is.Empty, "nothing is tracked while the guard is off");
    }

    [Test]
    public void RuntimePolicyChange_NextEventUsesTheNewPolicy_AndTheStormGuardStartsOver()
    {
        var before = new DevicePolicy { OnPanic = PanicAction.Restart, StormThreshold = 2 };
        var after = new DevicePolicy { OnPanic = PanicAction.CoredumpDestroy, StormThreshold = 2 };
        DevicePolicyState state = PolicyEngine.OnEvent(DevicePolicyState.Initial, before, Panic(), _time.GetUtcNow()).State;
        state = PolicyEngine.OnEvent(state, before, Panic(), _time.GetUtcNow()).State;
        Assert.That(state.StormGuard, Is.True);

        state = PolicyEngine.OnPolicyChanged(state);
        PolicyDecision next = PolicyEngine.OnEvent(state, after, Panic(), _time.GetUtcNow());

        Assert.That(next.Action.Name, Is.EqualTo("coredump-destroy"));
    }

    [TestCase(VmOperation.DumpGuestMemory, true, "ContinueWithRemaining", null)]
    [TestCase(VmOperation.DumpGuestMemory, false, "Run", VmOperation.Reset)]
    [TestCase(VmOperation.Reset, false, "Run", VmOperation.PowerOff)]
    [TestCase(VmOperation.RequestShutdown, false, "Run", VmOperation.PowerOff)]
    [TestCase(VmOperation.InjectNmi, false, "Run", VmOperation.Reset)]
    [TestCase(VmOperation.Pause, false, "None", null)]
    [TestCase(VmOperation.Resume, false, "None", null)]
    [TestCase(VmOperation.PowerOff, false, "None", null)]
    public void FallbackFor_FailedStep_IsTheDocumentedFallback(VmOperation failed, bool moreSteps, string kind, VmOperation? next)
    {
        Fallback fallback = PolicyEngine.FallbackFor(new PlannedStep(failed), moreSteps);

        Assert.That(fallback.Kind.ToString(), Is.EqualTo(kind));
        if (next is VmOperation op)
        {
            Assert.That(fallback.Step.Operation, Is.EqualTo(op));
        }
    }

    [Test]
    public void FallbackChain_AlwaysTerminates()
    {
        foreach (VmOperation op in Enum.GetValues<VmOperation>())
        {
            var step = new PlannedStep(op);
            int hops = 0;
            for (Fallback f = PolicyEngine.FallbackFor(step, false); f.Kind == FallbackKind.Run; f = PolicyEngine.FallbackFor(f.Step, false))
            {
                Assert.That(++hops, Is.LessThan(4), op.ToString());
            }
        }
    }

    [Test]
    public void Continue_AfterPreserve_ResumesAndClearsThePanickedState()
    {
        var policy = new DevicePolicy { OnPanic = PanicAction.Preserve };
        PolicyDecision panic = PolicyEngine.OnEvent(DevicePolicyState.Initial, policy, Panic(), _time.GetUtcNow());
        DevicePolicyState paused = PolicyEngine.AfterExecution(panic.State, [new ActionOutcome { Operation = VmOperation.Pause, Succeeded = true, Duration = default }]);
        Assert.That(paused.Condition, Is.EqualTo(GuestCondition.Paused));

        PolicyDecision resume = PolicyEngine.OnContinue(paused);
        DevicePolicyState running = PolicyEngine.AfterExecution(resume.State, [new ActionOutcome { Operation = VmOperation.Resume, Succeeded = true, Duration = default }]);

        Assert.Multiple(() =>
        {
            Assert.That(resume.Steps, Is.EqualTo(new[] { new PlannedStep(VmOperation.Resume) }));
            Assert.That(running.Condition, Is.EqualTo(GuestCondition.Running));
        });
    }

    [Test]
    public void Continue_ResumeFails_StaysPaused()
    {
        DevicePolicyState paused = DevicePolicyState.Initial with { Condition = GuestCondition.Paused };
        PolicyDecision resume = PolicyEngine.OnContinue(paused);

        Assert.That(PolicyEngine.AfterExecution(resume.State, [new ActionOutcome { Operation = VmOperation.Resume, Succeeded = false, Duration = default }]).Condition, Is.EqualTo(GuestCondition.Paused));
    }

    [Test]
    public void Continue_LogOnlyPanic_ClearsStateWithoutACall()
    {
        PolicyDecision panic = PolicyEngine.OnEvent(DevicePolicyState.Initial, new DevicePolicy { OnPanic = PanicAction.LogOnly }, Panic(), _time.GetUtcNow());
        PolicyDecision resume = PolicyEngine.OnContinue(panic.State);

        Assert.That((resume.Steps.Length, resume.State.Condition), Is.EqualTo((0, GuestCondition.Running)));
    }

    [Test]
    public void AfterExecution_DumpFailedThenPowerOff_EndsPoweredOff()
    {
        DevicePolicyState state = PolicyEngine.AfterExecution(DevicePolicyState.Initial with { Condition = GuestCondition.Panicked },
        [
            new ActionOutcome { Operation = VmOperation.DumpGuestMemory, Succeeded = false, Duration = default },
            new ActionOutcome { Operation = VmOperation.PowerOff, Succeeded = true, Duration = default },
        ]);

        Assert.That(state.Condition, Is.EqualTo(GuestCondition.PoweredOff));
    }

    private GuestPanickedEvent Panic() => new() { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Source = WatchdogEventSource.ConfigField };

    private GuestCrashLoadedEvent CrashLoaded() => new() { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Source = WatchdogEventSource.ConfigField };

    private GuestShutdownEvent Shutdown() => new() { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Source = WatchdogEventSource.ConfigField };

    private WatchdogExpiredEvent Expired() => new() { DeviceId = "d", Sequence = ++_sequence, VmRunTime = default, HostTime = _time.GetUtcNow(), Timeout = TimeSpan.FromSeconds(5) };
}
