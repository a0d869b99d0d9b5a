using System.Diagnostics.Metrics;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests;

// Staged escalation end to end: a guest on a real device stops petting (or panics), the service
// runs the policy's steps at their times on a FakeTimeProvider, each once, and stops when the
// guest recovers; every step and cancellation is journaled, counted and shown in the status.
public sealed class PolicyServiceEscalationTests
{
    private static readonly DevicePolicy s_staged = new()
    {
        OnPanic = PanicAction.Preserve,
        OnWatchdog = WatchdogAction.InjectNmi,
        WatchdogEscalation = [new(TimeSpan.FromSeconds(10), WatchdogAction.Dump), new(TimeSpan.FromSeconds(10), WatchdogAction.Reset)],
    };

    [Test]
    public async Task WatchdogEscalation_GuestNeverRecovers_EachStepRunsOnceAtItsTime()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(s_staged);
        var meters = rig.Host.Services.GetRequiredService<IMeterFactory>();
        using var steps = new MetricCollector<long>(meters, "VirtioPanic.Hosting", "virtiopanic.escalation.steps");
        await ExpireAsync(rig);
        HandledEvent first = await rig.NextAsync("WATCHDOG");
        DateTimeOffset expiredAt = rig.Time.GetUtcNow();
        PendingEscalation? atStart = rig.Manager.GetDevice("wdt0")!.Escalation;

        rig.Time.Advance(TimeSpan.FromSeconds(9.999));
        await rig.IdleAsync();
        VmOperation[] beforeDue = rig.Vm.Operations;
        rig.Time.Advance(TimeSpan.FromMilliseconds(1));
        HandledEvent dump = await rig.NextAsync(PolicyService.EscalationStepName);
        JsonElement status = JsonDocument.Parse(rig.Manager.GetStatusJson()).RootElement.GetProperty("devices")[0];
        rig.Time.Advance(TimeSpan.FromSeconds(10));
        HandledEvent reset = await rig.NextAsync(PolicyService.EscalationStepName);
        rig.Time.Advance(TimeSpan.FromSeconds(120));
        HandledEvent[] rest = await rig.IdleAsync();

        JsonElement[] records = [.. rig.JournalLines().Select(l => JsonDocument.Parse(l).RootElement)];
        JsonElement decided = records.Single(r => r.GetProperty("type").GetString() == "event" && r.GetProperty("name").GetString() == "WATCHDOG");
        JsonElement[] later = [.. records.Where(r => r.GetProperty("type").GetString() == "step")];
        Assert.Multiple(() =>
        {
            Assert.That((first.PolicyAction, first.Steps.Single().Operation), Is.EqualTo(("inject-nmi", VmOperation.InjectNmi)));
            Assert.That(atStart, Is.EqualTo(new PendingEscalation { Kind = EscalationKind.Watchdog, Plan = "inject-nmi; 10s dump; 10s reset", TriggerSequence = first.Sequence, Step = 1, StepCount = 3, NextAction = "dump", NextDue = expiredAt + TimeSpan.FromSeconds(10), Vcpus = atStart!.Vcpus }));
            Assert.That(beforeDue, Is.EqualTo(new[] { VmOperation.InjectNmi }), "not before its time");
            Assert.That((dump.PolicyAction, dump.Sequence, dump.Outcome), Is.EqualTo(("dump", first.Sequence, "ok")));
            Assert.That(status.GetProperty("escalation").GetProperty("step").GetInt32(), Is.EqualTo(2));
            Assert.That(status.GetProperty("escalation").GetProperty("next-action").GetString(), Is.EqualTo("reset"));
            Assert.That(status.GetProperty("escalation").GetProperty("next-due").GetDateTimeOffset(), Is.EqualTo(expiredAt + TimeSpan.FromSeconds(20)));
            Assert.That(status.GetProperty("policy").GetProperty("on-watchdog").GetString(), Is.EqualTo("inject-nmi; 10s dump; 10s reset"));
            Assert.That(reset.PolicyAction, Is.EqualTo("reset"));
            Assert.That(rest.Select(r => r.Name), Has.None.EqualTo(PolicyService.EscalationStepName), "no step runs twice");
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.InjectNmi, VmOperation.DumpGuestMemory, VmOperation.Reset }));
            Assert.That(rig.Vm.BootReasonsAtReset, Is.EqualTo(new[] { WatchdogBootReason.Watchdog }));
            Assert.That(rig.Vm.Contexts.Select(c => c.Trigger?.Kind), Is.All.EqualTo(WatchdogEventKind.Expired), "every step's call names the expiry that started it");
            Assert.That(rig.Manager.GetDevice("wdt0")!.Escalation, Is.Null);

            Assert.That(decided.GetProperty("escalation").GetProperty("step").GetInt32(), Is.EqualTo(1));
            Assert.That(decided.GetProperty("escalation").GetProperty("next").GetString(), Is.EqualTo("dump"));
            Assert.That(later.Select(r => (r.GetProperty("action").GetString(), r.GetProperty("escalation").GetProperty("step").GetInt32(), r.GetProperty("seq").GetInt64())),
                Is.EqualTo(new[] { ("dump", 2, first.Sequence), ("reset", 3, first.Sequence) }));
            Assert.That(later.Select(r => records.Count(o => o.GetProperty("type").GetString() == "outcome" && o.GetProperty("id").GetInt64() == r.GetProperty("id").GetInt64())), Is.All.EqualTo(1), "each step carried out and journaled once");
            Assert.That(steps.GetMeasurementSnapshot().Select(m => ((string)m.Tags["kind"]!, (string)m.Tags["action"]!, (string)m.Tags["outcome"]!)),
                Is.EqualTo(new[] { ("watchdog", "inject-nmi", "ok"), ("watchdog", "dump", "ok"), ("watchdog", "reset", "ok") }));
        });
    }

    [Test]
    public async Task WatchdogEscalation_GuestRearmsAfterTheNmi_TheRemainingStepsAreCancelled()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(s_staged);
        var meters = rig.Host.Services.GetRequiredService<IMeterFactory>();
        using var cancelled = new MetricCollector<long>(meters, "VirtioPanic.Hosting", "virtiopanic.escalation.cancelled");
        await ExpireAsync(rig);
        await rig.NextAsync("WATCHDOG");
        rig.Time.Advance(TimeSpan.FromSeconds(3));

        rig.Guest.Rearm();
        HandledEvent armed = await rig.NextAsync("VIRTIO_WDT_ARMED");
        for (int i = 0; i < 20; i++)
        {
            // The recovered guest pets on, past every step's time.
            rig.Time.Advance(TimeSpan.FromSeconds(2));
            rig.Guest.Heartbeat();
        }

        HandledEvent[] rest = await rig.IdleAsync();

        JsonElement record = rig.JournalLines().Select(l => JsonDocument.Parse(l).RootElement)
            .Single(r => r.GetProperty("type").GetString() == "event" && r.GetProperty("name").GetString() == "VIRTIO_WDT_ARMED" && r.TryGetProperty("escalation-cancelled", out _));
        Assert.Multiple(() =>
        {
            Assert.That(armed.Note, Does.Contain("cancelled before step 2 of 3 (dump)").And.Contain("armed again"));
            Assert.That(rest.Select(r => r.Name), Has.None.EqualTo(PolicyService.EscalationStepName));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.InjectNmi }));
            Assert.That(rig.Manager.GetDevice("wdt0")!.Escalation, Is.Null);
            Assert.That(record.GetProperty("escalation-cancelled").GetProperty("code").GetString(), Is.EqualTo("recovered"));
            Assert.That(record.GetProperty("escalation-cancelled").GetProperty("action").GetString(), Is.EqualTo("dump"));
            Assert.That(cancelled.GetMeasurementSnapshot().Select(m => ((string)m.Tags["kind"]!, (string)m.Tags["reason"]!)), Is.EqualTo(new[] { ("watchdog", "recovered") }));
        });
    }

    [Test]
    public async Task WatchdogEscalation_GuestPanicsAfterTheNmi_ThePanicPolicyTakesOver()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(s_staged);
        await ExpireAsync(rig);
        await rig.NextAsync("WATCHDOG");
        rig.Time.Advance(TimeSpan.FromSeconds(2));

        rig.Guest.Panic();
        HandledEvent panic = await rig.NextAsync("GUEST_PANICKED");
        rig.Time.Advance(TimeSpan.FromSeconds(60));
        HandledEvent[] rest = await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(panic.PolicyAction, Is.EqualTo("preserve"));
            Assert.That(panic.Note, Does.Contain("a panic report took over"));
            Assert.That(rest.Select(r => r.Name), Has.None.EqualTo(PolicyService.EscalationStepName));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.InjectNmi, VmOperation.Pause }));
        });
    }

    [Test]
    public async Task WatchdogEscalation_NmiFails_TheNextStepRunsAtOnceInsteadOfTheFallback()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(s_staged);
        rig.Vm.Failures[VmOperation.InjectNmi] = "no NMI on this VM";
        await ExpireAsync(rig);

        HandledEvent nmi = await rig.NextAsync("WATCHDOG");
        HandledEvent dump = await rig.NextAsync(PolicyService.EscalationStepName);
        VmOperation[] atOnce = rig.Vm.Operations;
        rig.Time.Advance(TimeSpan.FromSeconds(10));
        HandledEvent reset = await rig.NextAsync(PolicyService.EscalationStepName);

        Assert.Multiple(() =>
        {
            Assert.That(nmi.Outcome, Is.EqualTo("failed"));
            Assert.That(dump.PolicyAction, Is.EqualTo("dump"));
            Assert.That(atOnce, Is.EqualTo(new[] { VmOperation.InjectNmi, VmOperation.DumpGuestMemory }), "no reset fallback for the NMI, no 10 s wait for a guest that got no NMI");
            Assert.That(reset.PolicyAction, Is.EqualTo("reset"));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.InjectNmi, VmOperation.DumpGuestMemory, VmOperation.Reset }));
        });
    }

    [Test]
    public async Task WatchdogEscalation_LastStepFails_TakesItsUsualFallback()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(s_staged);
        rig.Vm.Failures[VmOperation.Reset] = "reset refused";
        await ExpireAsync(rig);
        await rig.NextAsync("WATCHDOG");
        rig.Time.Advance(TimeSpan.FromSeconds(10));
        await rig.NextAsync(PolicyService.EscalationStepName);

        rig.Time.Advance(TimeSpan.FromSeconds(10));
        HandledEvent last = await rig.NextAsync(PolicyService.EscalationStepName);

        Assert.That((last.Outcome, last.Steps.Select(s => s.Operation)), Is.EqualTo(("fallback", new[] { VmOperation.Reset, VmOperation.PowerOff })));
    }

    [Test]
    public async Task WatchdogEscalation_ManagementContinue_CancelsIt()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(s_staged with { WatchdogEscalation = [new(TimeSpan.FromSeconds(30), WatchdogAction.Reset)], OnWatchdog = WatchdogAction.Pause });
        await ExpireAsync(rig);
        await rig.NextAsync("WATCHDOG");

        HandledEvent resumed = await rig.Manager.ContinueAsync("wdt0");
        rig.Time.Advance(TimeSpan.FromSeconds(60));
        HandledEvent[] rest = await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(resumed.Note, Does.Contain("cancelled before step 2 of 2 (reset): a management continue"));
            Assert.That(rest.Select(r => r.Name), Has.None.EqualTo(PolicyService.EscalationStepName));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.Pause, VmOperation.Resume }));
        });
    }

    [Test]
    public async Task PanicEscalation_GuestDoesNotReboot_TheLaterStepRuns()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.LogOnly, PanicEscalation = [new(TimeSpan.FromSeconds(30), PanicAction.CoredumpRestart)] });
        rig.Guest.Boot();

        rig.Guest.Panic();
        HandledEvent panic = await rig.NextAsync("GUEST_PANICKED");
        rig.Time.Advance(TimeSpan.FromSeconds(30));
        HandledEvent step = await rig.NextAsync(PolicyService.EscalationStepName);

        Assert.Multiple(() =>
        {
            Assert.That((panic.PolicyAction, panic.Steps.Count), Is.EqualTo(("log-only", 0)));
            Assert.That(step.PolicyAction, Is.EqualTo("coredump-restart"));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.DumpGuestMemory, VmOperation.Reset }));
            Assert.That(rig.Vm.BootReasonsAtReset, Is.EqualTo(new[] { WatchdogBootReason.Panic }));
        });
    }

    [Test]
    public async Task PanicEscalation_GuestRebootsItself_TheLaterStepIsCancelled()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.LogOnly, PanicEscalation = [new(TimeSpan.FromSeconds(30), PanicAction.CoredumpRestart)] });
        rig.Guest.Boot();

        rig.Guest.Panic();
        await rig.NextAsync("GUEST_PANICKED");
        rig.Time.Advance(TimeSpan.FromSeconds(10));
        rig.Guest.Reboot();
        HandledEvent reset = await rig.NextAsync("VIRTIO_WDT_DRIVER_RESET");
        rig.Time.Advance(TimeSpan.FromSeconds(60));
        HandledEvent[] rest = await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(reset.Note, Does.Contain("panic escalation 'log-only; 30s coredump-restart' cancelled before step 2 of 2"));
            Assert.That(rest.Select(r => r.Name), Has.None.EqualTo(PolicyService.EscalationStepName));
            Assert.That(rig.Vm.Operations, Is.Empty);
        });
    }

    [Test]
    public async Task JournaledStepWithoutOutcome_IsReportedAtTheNextStart_AndNotRunAgain()
    {
        using var directory = new TempDirectory();
        File.WriteAllText(
            directory.File("journal.jsonl"),
            "{\"type\":\"start\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:00+00:00\",\"pid\":1}\n" +
            "{\"type\":\"step\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:20+00:00\",\"id\":7,\"device\":\"wdt0\",\"seq\":3,\"name\":\"ESCALATION_STEP\",\"action\":\"reset\",\"acting\":true,\"escalation\":{\"kind\":\"watchdog\",\"plan\":\"inject-nmi; 10s dump; 10s reset\",\"trigger-seq\":3,\"step\":3,\"of\":3}}\n");

        await using PolicyRig rig = await PolicyRig.StartAsync(s_staged, directory: directory);
        rig.Time.Advance(TimeSpan.FromMinutes(5));
        await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Manager.Recovery!.UnactedEvents.Select(e => (e.Name, e.PolicyAction, e.Sequence)), Is.EqualTo(new[] { (PolicyService.EscalationStepName, "reset", 3L) }));
            Assert.That(rig.Vm.Operations, Is.Empty, "a step decided without a known VM state and left without an outcome is reported, never run");
        });
    }

    [Test]
    public async Task VcpuStallPolicy_StageTwo_StartsItsSequence_TheLaterStepRunsAtItsTime()
    {
        await using PolicyRig rig = await StallRigAsync();
        var meters = rig.Host.Services.GetRequiredService<IMeterFactory>();
        using var steps = new MetricCollector<long>(meters, "VirtioPanic.Hosting", "virtiopanic.escalation.steps");

        (HandledEvent stalled, HandledEvent expired) = await StallCpuOneAsync(rig);
        PendingEscalation? escalation = rig.Manager.GetDevice("wdt0")!.Escalation;
        rig.Guest.Advance(TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(250));
        HandledEvent reset = await rig.NextAsync(PolicyService.EscalationStepName);

        JsonElement record = rig.JournalLines().Select(l => JsonDocument.Parse(l).RootElement)
            .Single(r => r.GetProperty("type").GetString() == "event" && r.GetProperty("name").GetString() == "VIRTIO_WDT_VCPU_STALLED");
        Assert.Multiple(() =>
        {
            Assert.That((stalled.PolicyAction, stalled.Steps.Count, ((VcpuStalledEvent)stalled.Event!).Vcpu), Is.EqualTo(("log", 0, 1)));
            Assert.That(record.GetProperty("qmp").GetProperty("virtio-wdt").GetProperty("vcpu").GetInt32(), Is.EqualTo(1), "journaled in QMP shape, naming the vCPU");
            Assert.That((expired.PolicyAction, ((VcpuStallExpiredEvent)expired.Event!).Vcpu), Is.EqualTo(("inject-nmi", 1)));
            Assert.That((escalation?.Kind, escalation?.Plan, escalation?.NextAction), Is.EqualTo(((EscalationKind?)EscalationKind.VcpuStall, "inject-nmi; 5s reset", "reset")));
            Assert.That(escalation!.Vcpus, Is.EqualTo(new uint[] { 1 }));
            Assert.That(reset.PolicyAction, Is.EqualTo("reset"));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.InjectNmi, VmOperation.Reset }));
            Assert.That(rig.Vm.BootReasonsAtReset, Is.EqualTo(new[] { WatchdogBootReason.Watchdog }));
            Assert.That(steps.GetMeasurementSnapshot().Select(m => (string)m.Tags["kind"]!), Is.EqualTo(new[] { "vcpu-stall", "vcpu-stall" }));
        });
    }

    [Test]
    public async Task VcpuStallPolicy_GuestPanicsAfterTheNmi_TheRemainingStepIsCancelled()
    {
        await using PolicyRig rig = await StallRigAsync();
        await StallCpuOneAsync(rig);

        rig.Guest.Panic();
        HandledEvent panic = await rig.NextAsync("GUEST_PANICKED");
        rig.Guest.Advance(TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(500));
        HandledEvent[] rest = await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(panic.Note, Does.Contain("vcpu-stall escalation 'inject-nmi; 5s reset' cancelled before step 2 of 2 (reset): a panic report took over"));
            Assert.That(rest.Select(r => r.Name), Has.None.EqualTo(PolicyService.EscalationStepName));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.InjectNmi, VmOperation.Pause }));
        });
    }

    [Test]
    public async Task VcpuStallPolicy_CpuPetsAgainAfterTheNmi_TheRecoveryCancelsTheRemainingStep()
    {
        await using PolicyRig rig = await StallRigAsync();
        await StallCpuOneAsync(rig);

        // The NMI "worked": CPU 1 pets again before the reset step is due (5 s after the NMI).
        rig.Guest.Run(d => d.StartVcpuPetting([1]));
        HandledEvent recovered = await rig.NextAsync("VIRTIO_WDT_VCPU_RECOVERED");
        rig.Guest.Advance(TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(500));
        HandledEvent[] rest = await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That(((VcpuRecoveredEvent)recovered.Event!).Vcpu, Is.EqualTo(1));
            Assert.That(recovered.Note, Does.Contain("cancelled before step 2 of 2 (reset)"));
            Assert.That(rest.Select(r => r.Name), Has.None.EqualTo(PolicyService.EscalationStepName));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.InjectNmi }));
            Assert.That(rig.Manager.GetDevice("wdt0")!.Escalation, Is.Null);
        });
    }

    [Test]
    public async Task VcpuStallPolicy_CpuPetsAgainBeforeStageTwo_RecoveredIsJournaled_AndNothingIsDone()
    {
        await using PolicyRig rig = await StallRigAsync();
        rig.Guest.Boot();
        rig.Guest.Run(d => d.StartVcpuPetting());
        rig.Guest.Advance(TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(250));
        rig.Guest.Run(d =>
        {
            d.StallCpu(1);
            return 0;
        });
        rig.Guest.Advance(TimeSpan.FromSeconds(2.5), TimeSpan.FromMilliseconds(250));
        await rig.NextAsync("VIRTIO_WDT_VCPU_STALLED");

        rig.Guest.Run(d => d.StartVcpuPetting([1]));
        HandledEvent recovered = await rig.NextAsync("VIRTIO_WDT_VCPU_RECOVERED");
        rig.Guest.Advance(TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(500));
        HandledEvent[] rest = await rig.IdleAsync();

        Assert.Multiple(() =>
        {
            Assert.That((recovered.PolicyAction, ((VcpuRecoveredEvent)recovered.Event!).Vcpu), Is.EqualTo(("log", 1)));
            Assert.That(rest.Select(r => r.Name), Has.None.EqualTo("VIRTIO_WDT_VCPU_STALL_EXPIRED"));
            Assert.That(rig.Vm.Operations, Is.Empty);
        });
    }

    // A guest with two stall-detector slots whose driver only logs a VCPU_STALL notice (so the
    // device's stage two comes), under "inject-nmi; 5s reset" for a stall and preserve for a panic.
    private static Task<PolicyRig> StallRigAsync() => PolicyRig.StartAsync(
        new DevicePolicy { OnPanic = PanicAction.Preserve, OnVcpuStall = WatchdogAction.InjectNmi, VcpuStallEscalation = [new(TimeSpan.FromSeconds(5), WatchdogAction.Reset)] },
        guest: time => new GuestRig(time, vcpus: 2, driverOptions: new GuestDriver.Watchdog.WatchdogDriverOptions { VcpuStallPanic = false }));

    // Both CPUs pet; CPU 1 stops: stage one after 2 s of its run time, stage two 2 s later.
    private static async Task<(HandledEvent Stalled, HandledEvent Expired)> StallCpuOneAsync(PolicyRig rig)
    {
        rig.Guest.Boot();
        rig.Guest.Run(d => d.StartVcpuPetting());
        rig.Guest.Advance(TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(250));
        rig.Guest.Run(d =>
        {
            d.StallCpu(1);
            return 0;
        });
        rig.Guest.Advance(TimeSpan.FromSeconds(2.5), TimeSpan.FromMilliseconds(250));
        HandledEvent stalled = await rig.NextAsync("VIRTIO_WDT_VCPU_STALLED");
        rig.Guest.Advance(TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(250));
        HandledEvent expired = await rig.NextAsync("VIRTIO_WDT_VCPU_STALL_EXPIRED");
        return (stalled, expired);
    }

    // Boots, arms, and lets the 5 s watchdog expire.
    private static async Task ExpireAsync(PolicyRig rig)
    {
        rig.Guest.Boot();
        rig.Guest.Heartbeat();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
        rig.Time.Advance(TimeSpan.FromSeconds(5));
    }
}
