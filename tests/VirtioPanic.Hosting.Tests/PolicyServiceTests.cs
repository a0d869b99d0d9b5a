using System.Diagnostics.Metrics;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests;

// The hosted service end to end: a guest on a real device reports, the service decides, journals
// and makes exactly the right calls on a fake VM control, once.
public sealed class PolicyServiceTests
{
    [TestCase(PanicAction.Destroy, new[] { VmOperation.PowerOff })]
    [TestCase(PanicAction.Restart, new[] { VmOperation.Reset })]
    [TestCase(PanicAction.Preserve, new[] { VmOperation.Pause })]
    [TestCase(PanicAction.CoredumpDestroy, new[] { VmOperation.DumpGuestMemory, VmOperation.PowerOff })]
    [TestCase(PanicAction.CoredumpRestart, new[] { VmOperation.DumpGuestMemory, VmOperation.Reset })]
    [TestCase(PanicAction.LogOnly, new VmOperation[0])]
    public async Task Panic_EachAction_CallsTheVmControlExactlyOnce(PanicAction action, VmOperation[] expected)
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = action });

        rig.Guest.Panic();
        HandledEvent handled = await rig.NextAsync("GUEST_PANICKED");
        await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Vm.Operations, Is.EqualTo(expected));
            Assert.That(handled.PolicyAction, Is.EqualTo(PolicyNames.Of(action)));
            Assert.That(handled.Outcome, Is.EqualTo(expected.Length == 0 ? "logged" : "ok"));
            Assert.That(rig.Vm.BootReasonsAtReset, Is.All.EqualTo(WatchdogBootReason.Panic), "boot reason set before the reset");
            Assert.That(rig.Vm.DumpPaths, Has.All.StartsWith(rig.Directory.File("dumps")));
        });
    }

    [TestCase(WatchdogAction.Reset, new[] { VmOperation.Reset })]
    [TestCase(WatchdogAction.Shutdown, new[] { VmOperation.RequestShutdown })]
    [TestCase(WatchdogAction.Poweroff, new[] { VmOperation.PowerOff })]
    [TestCase(WatchdogAction.Pause, new[] { VmOperation.Pause })]
    [TestCase(WatchdogAction.Dump, new[] { VmOperation.DumpGuestMemory })]
    [TestCase(WatchdogAction.InjectNmi, new[] { VmOperation.InjectNmi })]
    [TestCase(WatchdogAction.None, new VmOperation[0])]
    public async Task WatchdogStall_EachAction_CallsTheVmControlExactlyOnce(WatchdogAction action, VmOperation[] expected)
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnWatchdog = action });
        rig.Guest.Boot();
        rig.Guest.Heartbeat();
        rig.Time.Advance(TimeSpan.FromSeconds(4));
        rig.Guest.Heartbeat();
        rig.Time.Advance(TimeSpan.FromSeconds(4.999));
        Assert.That(rig.Vm.Operations, Is.Empty, "not before the deadline");

        rig.Time.Advance(TimeSpan.FromMilliseconds(1));
        HandledEvent handled = await rig.NextAsync("WATCHDOG");
        await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Vm.Operations, Is.EqualTo(expected));
            Assert.That(rig.Vm.BootReasonsAtReset, Is.All.EqualTo(WatchdogBootReason.Watchdog));
            Assert.That(JsonDocument.Parse(handled.Json).RootElement.GetProperty("data").GetProperty("action").GetString(), Is.EqualTo(action == WatchdogAction.Dump ? "none" : PolicyNames.Of(action)));
        });
    }

    [Test]
    public async Task RichPanicRecord_ReachesTheVmControlWithMessageAndVcpu()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Preserve });
        rig.Guest.Boot();

        rig.Guest.PanicRecord("Kernel panic - not syncing: sysrq triggered crash", vcpu: 3, 0xEF, 1, 2, 3, 4);
        HandledEvent handled = await rig.NextAsync("GUEST_PANICKED");

        VmActionContext call = rig.Vm.Contexts.Single();
        var panic = (GuestPanickedEvent)call.Trigger!;
        JsonElement root = JsonDocument.Parse(handled.Json).RootElement;
        JsonElement data = root.GetProperty("data");
        Assert.Multiple(() =>
        {
            Assert.That(call.Operation, Is.EqualTo(VmOperation.Pause));
            Assert.That(panic.Message, Is.EqualTo("Kernel panic - not syncing: sysrq triggered crash"));
            Assert.That(panic.VcpuId, Is.EqualTo(3u));
            Assert.That(data.GetProperty("action").GetString(), Is.EqualTo("pause"));
            Assert.That(data.GetProperty("info").GetProperty("type").GetString(), Is.EqualTo("hyper-v"));
            Assert.That(data.GetProperty("info").GetProperty("arg1").GetUInt64(), Is.EqualTo(0xEFu));
            Assert.That(root.GetProperty("virtio-wdt").GetProperty("vcpu").GetUInt32(), Is.EqualTo(3u));
            Assert.That(rig.Guest.Device.GetStatus().Paused, Is.True, "the device's run-time clock is paused with the VM");
        });
    }

    [Test]
    public async Task CrashLoaded_CrashKernelMissesItsDeadline_ItsActionRunsOnce()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { CrashKernelDeadline = TimeSpan.FromSeconds(60), OnCrashKernelTimeout = PanicAction.Restart });

        rig.Guest.CrashLoaded();
        HandledEvent crash = await rig.NextAsync("GUEST_CRASHLOADED");
        Assert.That((crash.PolicyAction, rig.Vm.Operations.Length), Is.EqualTo(("log", 0)));
        Assert.That(rig.Manager.GetDevice("wdt0")!.Deadline?.Kind, Is.EqualTo(PendingDeadlineKind.CrashKernel));

        rig.Time.Advance(TimeSpan.FromSeconds(60));
        HandledEvent deadline = await rig.NextAsync("DEADLINE");
        rig.Time.Advance(TimeSpan.FromSeconds(600));
        await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(deadline.PolicyAction, Is.EqualTo("restart"));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.Reset }));
            Assert.That(rig.Manager.GetDevice("wdt0")!.Deadline, Is.Null);
        });
    }

    [Test]
    public async Task CrashLoaded_ThenShutdownReport_NoActionAtTheDeadline()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { CrashKernelDeadline = TimeSpan.FromSeconds(60) });

        rig.Guest.CrashLoaded();
        await rig.NextAsync("GUEST_CRASHLOADED");
        rig.Guest.Shutdown();
        HandledEvent shutdown = await rig.NextAsync("GUEST_PVSHUTDOWN");
        rig.Time.Advance(TimeSpan.FromSeconds(120));
        HandledEvent[] rest = await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(shutdown.Note, Does.Contain("crash kernel finished"));
            Assert.That(rest, Is.Empty);
            Assert.That(rig.Vm.Operations, Is.Empty);
        });
    }

    [Test]
    public async Task GraceWindow_GuestResetsItself_NoAction()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Destroy, PanicGracePeriod = TimeSpan.FromSeconds(30) });
        rig.Guest.Boot();

        rig.Guest.Panic();
        HandledEvent panic = await rig.NextAsync("GUEST_PANICKED");
        rig.Time.Advance(TimeSpan.FromSeconds(10));
        rig.Guest.Reboot();
        HandledEvent reset = await rig.NextAsync("VIRTIO_WDT_DRIVER_RESET");
        rig.Time.Advance(TimeSpan.FromSeconds(60));
        HandledEvent[] rest = await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(panic.PolicyAction, Is.EqualTo("grace"));
            Assert.That(reset.Note, Does.Contain("cancelled"));
            Assert.That(rest.Select(r => r.Name), Has.None.EqualTo("DEADLINE"));
            Assert.That(rig.Vm.Operations, Is.Empty);
        });
    }

    [Test]
    public async Task GraceWindow_Elapses_ActionRunsOnce()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Destroy, PanicGracePeriod = TimeSpan.FromSeconds(30) });

        rig.Guest.Panic();
        await rig.NextAsync("GUEST_PANICKED");
        rig.Time.Advance(TimeSpan.FromSeconds(29));
        Assert.That(rig.Vm.Operations, Is.Empty);
        rig.Time.Advance(TimeSpan.FromSeconds(1));
        HandledEvent fired = await rig.NextAsync("DEADLINE");
        rig.Time.Advance(TimeSpan.FromSeconds(30));
        await rig.IdleAsync();

        Assert.That((fired.PolicyAction, rig.Vm.Operations), Is.EqualTo(("destroy", new[] { VmOperation.PowerOff })));
    }

    // A timer that fires a little before its due time by the wall clock (TimeProvider.System's
    // timers count whole milliseconds, and the wall clock can be slewed): the deadline is not
    // lost; it is pointed at its due time again and fires then, once.
    [Test]
    public async Task GraceWindow_TimerFiresEarly_TheDeadlineStillFiresOnce()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(
            new DevicePolicy { OnPanic = PanicAction.Destroy, PanicGracePeriod = TimeSpan.FromSeconds(30) },
            services: s => s.AddSingleton<TimeProvider>(p => new EarlyTimers(p.GetRequiredService<FakeTimeProvider>(), TimeSpan.FromMilliseconds(1))));

        rig.Guest.Panic();
        await rig.NextAsync("GUEST_PANICKED");
        rig.Time.Advance(TimeSpan.FromSeconds(30) - TimeSpan.FromMilliseconds(1));
        HandledEvent[] early = await rig.IdleAsync();
        rig.Time.Advance(TimeSpan.FromMilliseconds(1));
        HandledEvent fired = await rig.NextAsync("DEADLINE");
        rig.Time.Advance(TimeSpan.FromSeconds(30));
        HandledEvent[] rest = await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(early, Is.Empty, "fired early: nothing decided before the due time");
            Assert.That((fired.PolicyAction, rig.Vm.Operations), Is.EqualTo(("destroy", new[] { VmOperation.PowerOff })));
            Assert.That(rest.Select(r => r.Name), Has.None.EqualTo("DEADLINE"));
        });
    }

    // Every timer fires 'early' before its due time; the clock is the fake's.
    private sealed class EarlyTimers(FakeTimeProvider time, TimeSpan early) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => time.GetUtcNow();

        public override long GetTimestamp() => time.GetTimestamp();

        public override long TimestampFrequency => time.TimestampFrequency;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            time.CreateTimer(callback, state, dueTime > early ? dueTime - early : dueTime, period);
    }

    [Test]
    public async Task PanicStorm_SwitchesToPreserve_ReportsIt_AndContinueResumes()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Restart, StormThreshold = 3, StormWindow = TimeSpan.FromMinutes(5) });
        var handled = new List<HandledEvent>();
        for (int i = 0; i < 3; i++)
        {
            rig.Guest.Panic();
            handled.Add(await rig.NextAsync("GUEST_PANICKED"));
            rig.Time.Advance(TimeSpan.FromSeconds(30));
        }

        DeviceReport report = rig.Manager.GetDevice("wdt0")!;
        Assert.Multiple(() =>
        {
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.Reset, VmOperation.Reset, VmOperation.Pause }));
            Assert.That(handled[2].Note, Does.Contain("panic storm"));
            Assert.That(report.StormGuardTripped, Is.True);
            Assert.That(report.EffectivePanicAction, Is.EqualTo(PanicAction.Preserve));
            Assert.That(report.Condition, Is.EqualTo(GuestCondition.Paused));
        });

        HandledEvent resumed = await rig.Manager.ContinueAsync("wdt0");
        Assert.Multiple(() =>
        {
            Assert.That(resumed.Steps.Select(s => s.Operation), Is.EqualTo(new[] { VmOperation.Resume }));
            Assert.That(rig.Manager.GetDevice("wdt0")!.Condition, Is.EqualTo(GuestCondition.Running));
            Assert.That(rig.Guest.Device.GetStatus().Paused, Is.False);
        });
    }

    [Test]
    public async Task FailedDump_FallsBackToThePlansNextStep_BothRecorded()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.CoredumpDestroy });
        rig.Vm.Failures[VmOperation.DumpGuestMemory] = "disk full";

        rig.Guest.Panic();
        HandledEvent handled = await rig.NextAsync("GUEST_PANICKED");

        string outcome = rig.JournalLines().Single(l => l.Contains("\"type\":\"outcome\"", StringComparison.Ordinal));
        Assert.Multiple(() =>
        {
            Assert.That(handled.Steps.Select(s => (s.Operation, s.Succeeded)), Is.EqualTo(new[] { (VmOperation.DumpGuestMemory, false), (VmOperation.PowerOff, true) }));
            Assert.That(handled.Steps[0].Error, Is.EqualTo("disk full"));
            Assert.That(handled.Outcome, Is.EqualTo("fallback"));
            Assert.That(outcome, Does.Contain("\"op\":\"dump-guest-memory\",\"ok\":false,\"error\":\"disk full\""));
            Assert.That(outcome, Does.Contain("\"op\":\"power-off\",\"ok\":true"));
        });
    }

    [Test]
    public async Task FailedReset_FallsBackToPowerOff_RecordedAsFallback()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Restart });
        rig.Vm.Failures[VmOperation.Reset] = "reset line stuck";

        rig.Guest.Panic();
        HandledEvent handled = await rig.NextAsync("GUEST_PANICKED");

        Assert.That(handled.Steps.Select(s => (s.Operation, s.Succeeded, s.FallbackFor)), Is.EqualTo(new[]
        {
            (VmOperation.Reset, false, (VmOperation?)null),
            (VmOperation.PowerOff, true, (VmOperation?)VmOperation.Reset),
        }));
    }

    [Test]
    public async Task NmiAndResetBothFail_FallbackChainEndsInPowerOff()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnWatchdog = WatchdogAction.InjectNmi });
        rig.Vm.Failures[VmOperation.InjectNmi] = "no NMI line";
        rig.Vm.Failures[VmOperation.Reset] = "no reset either";
        rig.Guest.Boot();
        rig.Guest.Heartbeat();
        rig.Time.Advance(TimeSpan.FromSeconds(5));

        HandledEvent handled = await rig.NextAsync("WATCHDOG");

        Assert.That(handled.Steps.Select(s => s.Operation), Is.EqualTo(new[] { VmOperation.InjectNmi, VmOperation.Reset, VmOperation.PowerOff }));
    }

    [Test]
    public async Task RuntimePolicyChange_EffectiveFromTheNextEvent()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.LogOnly });
        rig.Guest.Panic();
        await rig.NextAsync("GUEST_PANICKED");

        await rig.Manager.SetPolicyAsync("wdt0", new DevicePolicy { OnPanic = PanicAction.Destroy });
        rig.Guest.Panic();
        HandledEvent second = await rig.NextAsync("GUEST_PANICKED");

        Assert.Multiple(() =>
        {
            Assert.That(second.PolicyAction, Is.EqualTo("destroy"));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.PowerOff }));
            Assert.That(rig.Manager.GetPolicy("wdt0").OnPanic, Is.EqualTo(PanicAction.Destroy));
        });
    }

    [Test]
    public async Task EventsBeforeTheServiceStarts_AreHandledWhenItStarts()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Destroy }, start: false);
        rig.Guest.Panic();

        await rig.Host.StartAsync();
        await rig.NextAsync("GUEST_PANICKED");

        Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.PowerOff }));
    }

    [Test]
    public async Task StatusQuery_TypedAndJson_ShowDevicesFeaturesWatchdogAndPolicies()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Preserve, OnWatchdog = WatchdogAction.InjectNmi });
        rig.Guest.Boot();
        rig.Guest.Heartbeat();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
        rig.Time.Advance(TimeSpan.FromSeconds(2));

        VirtioPanicStatus status = rig.Manager.GetStatus();
        JsonElement device = JsonDocument.Parse(rig.Manager.GetStatusJson()).RootElement.GetProperty("devices")[0];

        DeviceReport report = status.Devices.Single();
        Assert.Multiple(() =>
        {
            Assert.That(status.Running, Is.True);
            Assert.That(report.Device.DriverBound, Is.True);
            Assert.That(report.Device.NegotiatedFeatures, Is.EqualTo(WatchdogFeatures.All));
            Assert.That(report.Device.Armed, Is.True);
            Assert.That(report.Device.TimeLeft, Is.EqualTo(TimeSpan.FromSeconds(3)));
            Assert.That(report.Device.LastEvent, Is.InstanceOf<WatchdogArmedEvent>());
            Assert.That(device.GetProperty("device").GetString(), Is.EqualTo("wdt0"));
            Assert.That(device.GetProperty("driver-bound").GetBoolean(), Is.True);
            Assert.That(device.GetProperty("negotiated-features").EnumerateArray().Select(e => e.GetString()), Is.EquivalentTo(new[] { "events", "panic-config", "control", "pretimeout", "boot-reason", "log-tail" }));
            Assert.That(device.GetProperty("watchdog").GetProperty("time-left-ms").GetInt64(), Is.EqualTo(3000));
            Assert.That(device.GetProperty("policy").GetProperty("on-panic").GetString(), Is.EqualTo("preserve"));
            Assert.That(device.GetProperty("policy").GetProperty("on-watchdog").GetString(), Is.EqualTo("inject-nmi"));
            Assert.That(device.GetProperty("last-event").GetProperty("event").GetString(), Is.EqualTo("VIRTIO_WDT_ARMED"));
        });
    }

    [Test]
    public async Task Metrics_CountEventsAndActionsAndRecordLatency()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.CoredumpDestroy });
        rig.Vm.Failures[VmOperation.DumpGuestMemory] = "nope";
        var meters = rig.Host.Services.GetRequiredService<IMeterFactory>();
        using var events = new MetricCollector<long>(meters, "VirtioPanic.Hosting", "virtiopanic.events");
        using var actions = new MetricCollector<long>(meters, "VirtioPanic.Hosting", "virtiopanic.actions");
        using var latency = new MetricCollector<double>(meters, "VirtioPanic.Hosting", "virtiopanic.action.duration");
        using var eventToAction = new MetricCollector<double>(meters, "VirtioPanic.Hosting", "virtiopanic.action.latency");

        rig.Guest.Panic();
        await rig.NextAsync("GUEST_PANICKED");

        Assert.Multiple(() =>
        {
            Assert.That(events.GetMeasurementSnapshot().Single().Tags["kind"], Is.EqualTo("GUEST_PANICKED"));
            Assert.That(actions.GetMeasurementSnapshot().Select(m => ((string)m.Tags["operation"]!, (string)m.Tags["outcome"]!)),
                Is.EqualTo(new[] { ("dump-guest-memory", "failed"), ("power-off", "succeeded") }));
            Assert.That(latency.GetMeasurementSnapshot(), Has.Count.EqualTo(2));
            Assert.That(eventToAction.GetMeasurementSnapshot().Single().Tags["kind"], Is.EqualTo("GUEST_PANICKED"));
        });
    }

    [Test]
    public async Task EveryEvent_IsJournaledWithItsActionBeforeItCountsAsHandled()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Restart });
        rig.Guest.Boot();
        rig.Guest.Heartbeat();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
        rig.Guest.Panic();
        await rig.NextAsync("GUEST_PANICKED");

        string[] lines = rig.JournalLines();
        JsonElement[] records = [.. lines.Select(l => JsonDocument.Parse(l).RootElement)];
        JsonElement panic = records.Single(r => r.GetProperty("type").GetString() == "event" && r.GetProperty("name").GetString() == "GUEST_PANICKED");
        JsonElement outcome = records.Single(r => r.GetProperty("type").GetString() == "outcome");
        Assert.Multiple(() =>
        {
            Assert.That(records[0].GetProperty("type").GetString(), Is.EqualTo("start"));
            Assert.That(records.Count(r => r.GetProperty("type").GetString() == "event"), Is.EqualTo(2), "armed and panicked");
            Assert.That(panic.GetProperty("action").GetString(), Is.EqualTo("restart"));
            Assert.That(panic.GetProperty("qmp").GetProperty("event").GetString(), Is.EqualTo("GUEST_PANICKED"));
            Assert.That(outcome.GetProperty("id").GetInt64(), Is.EqualTo(panic.GetProperty("id").GetInt64()));
            Assert.That(Array.IndexOf(records, outcome), Is.GreaterThan(Array.IndexOf(records, panic)));
        });
    }
}
