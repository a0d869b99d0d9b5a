using System.Diagnostics;
using System.Text.Json;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Tests.Qmp;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests.Journal;

// A staged escalation survives a restart of the policy service: the escalation record written
// after each step stays pending in the journal (rotation carries it), the next start carries it
// into its run and resumes it at the next step's original due time, through the ordinary step
// path; reported instead when the VM is not in the state the step was planned for
// (PolicyService.Recovery.cs).
public sealed class EscalationResumeTests
{
    private static readonly DevicePolicy s_staged = new()
    {
        OnPanic = PanicAction.Preserve,
        OnWatchdog = WatchdogAction.InjectNmi,
        WatchdogEscalation = [new(TimeSpan.FromSeconds(10), WatchdogAction.Dump), new(TimeSpan.FromSeconds(10), WatchdogAction.Reset)],
    };

    [Test]
    public async Task RestartAfterStep1Of3_Step2RunsOnceAtItsOriginalDueTime_ThenStep3()
    {
        using var directory = new TempDirectory();
        (DateTimeOffset due, DateTimeOffset stoppedAt) = await RunStepOneAsync(directory);

        await using (PolicyRig rig = await StartAsync(directory, stoppedAt, running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            PendingEscalation? resumed = rig.Manager.GetDevice("wdt0")!.Escalation;
            rig.Time.SetUtcNow(due - TimeSpan.FromMilliseconds(1));
            await rig.IdleAsync();
            VmOperation[] beforeDue = rig.Vm.Operations;

            rig.Time.SetUtcNow(due);
            HandledEvent dump = await rig.NextAsync(PolicyService.EscalationStepName);
            DateTimeOffset dumpedAt = rig.Time.GetUtcNow();
            rig.Time.Advance(TimeSpan.FromSeconds(10));
            HandledEvent reset = await rig.NextAsync(PolicyService.EscalationStepName);
            rig.Time.Advance(TimeSpan.FromSeconds(120));
            HandledEvent[] rest = await rig.IdleAsync();

            JsonElement[] records = Records(rig);
            long carried = records.Single(r => Type(r) == "escalation" && r.TryGetProperty("of-run", out _)).GetProperty("id").GetInt64();
            JsonElement[] steps = [.. records.Where(r => Type(r) == "step")];
            using (Assert.EnterMultipleScope())
            {
                Assert.That(resumed, Is.Not.Null);
                Assert.That((resumed!.Kind, resumed.Plan, resumed.Step, resumed.StepCount, resumed.NextAction, resumed.NextDue), Is.EqualTo((EscalationKind.Watchdog, "inject-nmi; 10s dump; 10s reset", 1, 3, "dump", due)), "restored as it was after step 1");
                Assert.That(beforeDue, Is.Empty, "not before its original due time");
                Assert.That((dump.PolicyAction, dump.Outcome), Is.EqualTo(("dump", "ok")));
                Assert.That(dumpedAt, Is.EqualTo(due));
                Assert.That(reset.PolicyAction, Is.EqualTo("reset"));
                Assert.That(rest.Select(r => r.Name), Has.None.EqualTo(PolicyService.EscalationStepName), "no step runs twice");
                Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.DumpGuestMemory, VmOperation.Reset }), "step 1 not again; steps 2 and 3 once each");
                Assert.That(rig.Vm.BootReasonsAtReset, Is.EqualTo(new[] { WatchdogBootReason.Watchdog }));
                Assert.That(steps.Select(s => (s.GetProperty("action").GetString(), s.GetProperty("escalation").GetProperty("step").GetInt32())), Is.EqualTo(new[] { ("dump", 2), ("reset", 3) }));
                Assert.That(steps[0].GetProperty("settles-escalation").GetInt64(), Is.EqualTo(carried), "step 2's decision settles the carried escalation record");
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    // Stopped again after the resume, before the step was due: the carried record is still
    // pending, the third run carries it on and runs the step once.
    [Test]
    public async Task RestartedTwiceBeforeTheStepWasDue_TheThirdRunRunsItOnce()
    {
        using var directory = new TempDirectory();
        (DateTimeOffset due, DateTimeOffset stoppedAt) = await RunStepOneAsync(directory);
        await using (PolicyRig second = await StartAsync(directory, stoppedAt, running: true))
        {
            await second.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            Assert.That(second.Manager.GetDevice("wdt0")!.Escalation?.NextDue, Is.EqualTo(due));
            second.Time.Advance(TimeSpan.FromSeconds(2));
            await second.IdleAsync();
            Assert.That(second.Vm.Operations, Is.Empty);
            stoppedAt = second.Time.GetUtcNow();
        }

        await using (PolicyRig third = await StartAsync(directory, stoppedAt, running: true))
        {
            await third.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            VirtioPanic.Hosting.Journal.JournaledEscalation pending = third.Manager.Recovery!.PendingEscalations.Single();
            third.Time.SetUtcNow(due);
            HandledEvent dump = await third.NextAsync(PolicyService.EscalationStepName);
            using (Assert.EnterMultipleScope())
            {
                Assert.That((pending.Step, pending.NextAction, pending.Due), Is.EqualTo((1, "dump", due)), "one record, the second run's, carried again");
                Assert.That(dump.PolicyAction, Is.EqualTo("dump"));
                Assert.That(third.Vm.Operations, Is.EqualTo(new[] { VmOperation.DumpGuestMemory }));
            }
        }
    }

    [Test]
    public async Task RestartAfterTheDueTimePassed_TheStepRunsAtOnce()
    {
        using var directory = new TempDirectory();
        (DateTimeOffset due, _) = await RunStepOneAsync(directory);

        await using (PolicyRig rig = await StartAsync(directory, due + TimeSpan.FromMinutes(5), running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            VmOperation[] atOnce = rig.Vm.Operations;
            HandledEvent dump = await rig.NextAsync(PolicyService.EscalationStepName);
            PendingEscalation? after = rig.Manager.GetDevice("wdt0")!.Escalation;
            rig.Time.Advance(TimeSpan.FromSeconds(10));
            HandledEvent reset = await rig.NextAsync(PolicyService.EscalationStepName);

            using (Assert.EnterMultipleScope())
            {
                Assert.That(atOnce, Is.EqualTo(new[] { VmOperation.DumpGuestMemory }), "the overdue step ran as the escalation was restored, without waiting for the clock");
                Assert.That(dump.PolicyAction, Is.EqualTo("dump"));
                Assert.That(after?.NextDue, Is.EqualTo(due + TimeSpan.FromMinutes(5) + TimeSpan.FromSeconds(10)), "the step after it counts from when it ran");
                Assert.That(reset.PolicyAction, Is.EqualTo("reset"));
                Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.DumpGuestMemory, VmOperation.Reset }));
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    [Test]
    public async Task RestartAfterTheGuestRearmed_NothingRuns()
    {
        using var directory = new TempDirectory();
        DateTimeOffset stoppedAt;
        await using (PolicyRig first = await StartAsync(directory, at: null, running: true))
        {
            await ExpireAsync(first);
            await first.NextAsync("WATCHDOG");
            first.Time.Advance(TimeSpan.FromSeconds(3));
            first.Guest.Rearm();
            HandledEvent armed = await first.NextAsync("VIRTIO_WDT_ARMED");
            Assert.That(armed.Note, Does.Contain("cancelled before step 2 of 3"));
            stoppedAt = first.Time.GetUtcNow();
        }

        await using (PolicyRig rig = await StartAsync(directory, stoppedAt, running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            rig.Time.Advance(TimeSpan.FromMinutes(2));
            HandledEvent[] handled = await rig.IdleAsync();
            using (Assert.EnterMultipleScope())
            {
                Assert.That(rig.Manager.Recovery!.PendingEscalations, Is.Empty, "the cancellation settled the escalation record");
                Assert.That(handled, Is.Empty);
                Assert.That(rig.Vm.Operations, Is.Empty);
                Assert.That(rig.Manager.GetDevice("wdt0")!.Escalation, Is.Null);
            }
        }
    }

    [Test]
    public async Task RestartAfterTheLastStep_NothingRuns()
    {
        using var directory = new TempDirectory();
        DateTimeOffset stoppedAt;
        await using (PolicyRig first = await StartAsync(directory, at: null, running: true))
        {
            await ExpireAsync(first);
            await first.NextAsync("WATCHDOG");
            first.Time.Advance(TimeSpan.FromSeconds(10));
            await first.NextAsync(PolicyService.EscalationStepName);
            first.Time.Advance(TimeSpan.FromSeconds(10));
            await first.NextAsync(PolicyService.EscalationStepName);
            Assert.That(first.Vm.Operations, Is.EqualTo(new[] { VmOperation.InjectNmi, VmOperation.DumpGuestMemory, VmOperation.Reset }));
            stoppedAt = first.Time.GetUtcNow();
        }

        await using (PolicyRig rig = await StartAsync(directory, stoppedAt, running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            rig.Time.Advance(TimeSpan.FromMinutes(2));
            HandledEvent[] handled = await rig.IdleAsync();
            using (Assert.EnterMultipleScope())
            {
                Assert.That(rig.Manager.Recovery!.PendingEscalations, Is.Empty, "the last step settled the escalation record");
                Assert.That(rig.Manager.Recovery!.UnactedEvents, Is.Empty);
                Assert.That(handled, Is.Empty);
                Assert.That(rig.Vm.Operations, Is.Empty);
            }
        }
    }

    // Enough records after step 1 to rotate the 4 KiB journal several times: the escalation
    // record is carried into every new file, and the next start resumes it from the active file.
    [Test]
    public async Task PendingEscalationRecord_SurvivesRotation()
    {
        using var directory = new TempDirectory();
        DateTimeOffset due;
        DateTimeOffset stoppedAt;
        int carriedInto;
        await using (PolicyRig first = await StartAsync(directory, at: null, running: true, o => o.JournalMaxFileSize = 4096))
        {
            await ExpireAsync(first);
            await first.NextAsync("WATCHDOG");
            due = first.Manager.GetDevice("wdt0")!.Escalation!.NextDue;
            VirtioPanic.Hosting.Journal.EventJournal journal = first.Manager.Journal!;
            for (int i = 0; i < 200; i++)
            {
                // Records no later decision resolves or needs: filler that makes the file grow.
                Assert.That(await journal.AppendAsync(new(VirtioPanic.Hosting.Journal.JournalRecords.Torn(journal.Run, first.Time.GetUtcNow(), i), FlushToDisk: false)), Is.True);
            }

            carriedInto = Enumerable.Range(1, 4).Count(k => File.Exists(first.JournalPath + "." + k.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            stoppedAt = first.Time.GetUtcNow();
        }

        await using (PolicyRig rig = await StartAsync(directory, stoppedAt, running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            rig.Time.SetUtcNow(due);
            HandledEvent dump = await rig.NextAsync(PolicyService.EscalationStepName);
            using (Assert.EnterMultipleScope())
            {
                Assert.That(carriedInto, Is.GreaterThanOrEqualTo(2), "the journal rotated");
                Assert.That(rig.Manager.Recovery!.PendingEscalations.Select(e => (e.DeviceId, e.Step, e.NextAction)), Is.EqualTo(new[] { ("wdt0", 1, "dump") }));
                Assert.That(dump.PolicyAction, Is.EqualTo("dump"));
                Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.DumpGuestMemory }));
            }
        }
    }

    [Test]
    public async Task VmInAnotherRunStateAtRestart_ReportedAndNothingRuns()
    {
        using var directory = new TempDirectory();
        (DateTimeOffset due, DateTimeOffset stoppedAt) = await RunStepOneAsync(directory);

        await using (PolicyRig rig = await StartAsync(directory, stoppedAt, running: false))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            HandledEvent reported = await rig.NextAsync("RECOVERY");
            rig.Time.SetUtcNow(due + TimeSpan.FromMinutes(2));
            await rig.IdleAsync();
            JsonElement[] records = Records(rig);
            long carried = records.Single(r => Type(r) == "escalation" && r.TryGetProperty("of-run", out _)).GetProperty("id").GetInt64();
            JsonElement outcome = records.Single(r => Type(r) == "outcome" && r.GetProperty("id").GetInt64() == carried);

            using (Assert.EnterMultipleScope())
            {
                Assert.That(reported.Note, Does.Contain("was not resumed after a restart").And.Contain("the VM is paused now; the step was planned for a running VM"));
                Assert.That((reported.PolicyAction, reported.Steps.Count), Is.EqualTo(("dump", 0)));
                Assert.That(outcome.GetProperty("result").GetString(), Is.EqualTo("not-acted"));
                Assert.That(outcome.GetProperty("note").GetString(), Does.Contain("the VM is paused now"));
                Assert.That(rig.Vm.Operations, Is.Empty);
                Assert.That(rig.Manager.GetDevice("wdt0")!.Escalation, Is.Null);
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    [Test]
    public async Task VcpuStallEscalation_KeepsItsVcpuSetAcrossTheRestart()
    {
        using var directory = new TempDirectory();
        var policy = new DevicePolicy { OnPanic = PanicAction.Preserve, OnVcpuStall = WatchdogAction.InjectNmi, VcpuStallEscalation = [new(TimeSpan.FromSeconds(5), WatchdogAction.Reset)] };
        DateTimeOffset due;
        DateTimeOffset stoppedAt;
        await using (PolicyRig first = await PolicyRig.StartAsync(policy, directory: directory, start: false, guest: time => new GuestRig(time, vcpus: 2, driverOptions: new GuestDriver.Watchdog.WatchdogDriverOptions { VcpuStallPanic = false })))
        {
            first.Vm.RunState = true;
            await first.Host.StartAsync();
            first.Guest.Boot();
            first.Guest.Run(d => d.StartVcpuPetting());
            first.Guest.Advance(TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(250));
            first.Guest.Run(d =>
            {
                d.StallCpu(1);
                return 0;
            });
            first.Guest.Advance(TimeSpan.FromSeconds(2.5), TimeSpan.FromMilliseconds(250));
            await first.NextAsync("VIRTIO_WDT_VCPU_STALLED");
            first.Guest.Advance(TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(250));
            HandledEvent expired = await first.NextAsync("VIRTIO_WDT_VCPU_STALL_EXPIRED");
            Assert.That(expired.PolicyAction, Is.EqualTo("inject-nmi"));
            due = first.Manager.GetDevice("wdt0")!.Escalation!.NextDue;
            stoppedAt = first.Time.GetUtcNow();
        }

        await using (PolicyRig rig = await StartAsync(directory, stoppedAt, running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            PendingEscalation? resumed = rig.Manager.GetDevice("wdt0")!.Escalation;
            JsonElement record = Records(rig).Single(r => Type(r) == "escalation" && r.TryGetProperty("of-run", out _));
            rig.Time.SetUtcNow(due);
            HandledEvent reset = await rig.NextAsync(PolicyService.EscalationStepName);

            using (Assert.EnterMultipleScope())
            {
                Assert.That((resumed?.Kind, resumed?.NextAction, resumed?.NextDue), Is.EqualTo(((EscalationKind?)EscalationKind.VcpuStall, "reset", (DateTimeOffset?)due)));
                Assert.That(resumed!.Vcpus, Is.EqualTo(new uint[] { 1 }), "the stalled vCPU it waits for");
                Assert.That(record.GetProperty("vcpus").EnumerateArray().Select(v => v.GetUInt32()), Is.EqualTo(new uint[] { 1 }));
                Assert.That(reset.Note, Does.Contain("vcpu-stall escalation 'inject-nmi; 5s reset': step 2 of 2"));
                Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.Reset }));
            }
        }
    }

    // kill -9 of a child service between step 1 (preserve: the VM is paused) and step 2 (restart,
    // 10 s later) of a panic escalation: the restarted service, seeing the VM still paused, runs
    // step 2 once at its due time.
    [Test]
    public async Task ChildKilledBetweenStep1AndStep2_TheRestartedServiceRunsStep2ExactlyOnce()
    {
        using var directory = new TempDirectory();
        string journal = directory.File("journal.jsonl");
        using var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
        using (Process child = CrashChildProcess.Start("qmp", journal, monitor.SocketPath, "escalation"))
        {
            try
            {
                using FakeQmpMonitor.Connection connection = await monitor.AcceptAsync();
                Assert.That(await connection.AnswerAsync("""{"running": true, "status": "running"}"""), Is.EqualTo("query-status"));
                Assert.That(await CrashChildProcess.ReadLineAsync(child, TimeSpan.FromSeconds(60)), Is.EqualTo("PANICKED"));
                Assert.That(await connection.AnswerAsync(), Is.EqualTo("stop"), "step 1, preserve, pauses the VM");
                Assert.That(await CrashChildProcess.ReadLineAsync(child, TimeSpan.FromSeconds(60)), Is.EqualTo("HANDLED preserve"));
            }
            finally
            {
                CrashChildProcess.KillAndWait(child);
            }
        }

        await using (PolicyRig rig = await StartAsync(directory, DateTimeOffset.UtcNow, running: false, id: "crash-child"))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            VirtioPanic.Hosting.Journal.JournaledEscalation pending = rig.Manager.Recovery!.PendingEscalations.Single();
            PendingEscalation? resumed = rig.Manager.GetDevice("crash-child")!.Escalation;
            VmOperation[] beforeDue = rig.Vm.Operations;

            rig.Time.SetUtcNow(pending.Due);
            HandledEvent restart = await rig.NextAsync(PolicyService.EscalationStepName);
            rig.Time.Advance(TimeSpan.FromMinutes(2));
            HandledEvent[] rest = await rig.IdleAsync();

            using (Assert.EnterMultipleScope())
            {
                Assert.That((pending.Kind, pending.Plan, pending.Step, pending.StepCount, pending.NextAction, pending.VmRunning), Is.EqualTo((EscalationKind.Panic, "preserve; 10s restart", 1, 2, "restart", (bool?)false)), "journaled after step 1: the VM paused by it");
                Assert.That(rig.Manager.Recovery!.UnactedEvents, Is.Empty, "step 1's decision had its outcome");
                Assert.That(resumed?.NextDue, Is.EqualTo(pending.Due));
                Assert.That(beforeDue, Is.Empty);
                Assert.That((restart.PolicyAction, restart.Outcome), Is.EqualTo(("restart", "ok")));
                Assert.That(rest.Select(r => r.Name), Has.None.EqualTo(PolicyService.EscalationStepName));
                Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.Reset }), "step 2 exactly once, step 1 not again");
                Assert.That(rig.Vm.BootReasonsAtReset, Is.EqualTo(new[] { WatchdogBootReason.Panic }));
            }
        }

        await AssertNothingLeftAsync(directory, "crash-child", DateTimeOffset.UtcNow);
    }

    private const string StartR1 = "{\"type\":\"start\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:00+00:00\",\"pid\":1}\n";

    // Step 2 of 3 decided for a running VM; the process died before its call (no attempt record).
    private const string DumpDecided = "{\"type\":\"step\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:20+00:00\",\"id\":7,\"device\":\"wdt0\",\"seq\":3,\"name\":\"ESCALATION_STEP\",\"action\":\"dump\",\"acting\":true,\"vm\":{\"running\":true},"
        + "\"escalation\":{\"kind\":\"watchdog\",\"plan\":\"inject-nmi; 10s dump; 10s reset\",\"trigger-seq\":3,\"step\":2,\"of\":3,\"next\":\"reset\",\"next-after-ms\":10000}}\n";

    // The existing recovery rule carries a decided, unattempted step out once; the escalation then
    // goes on from it: the step after it its own delay later.
    [Test]
    public async Task StepDecidedNotAttempted_CarriedOutOnceAfterRestart_AndTheEscalationGoesOn()
    {
        using var directory = new TempDirectory();
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), StartR1 + DumpDecided);
        DateTimeOffset restartAt = new(2025, 6, 1, 12, 1, 0, TimeSpan.Zero);

        await using (PolicyRig rig = await StartAsync(directory, restartAt, running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            HandledEvent recovered = await rig.NextAsync("RECOVERY");
            PendingEscalation? after = rig.Manager.GetDevice("wdt0")!.Escalation;
            rig.Time.Advance(TimeSpan.FromSeconds(10));
            HandledEvent reset = await rig.NextAsync(PolicyService.EscalationStepName);
            rig.Time.Advance(TimeSpan.FromMinutes(2));
            HandledEvent[] rest = await rig.IdleAsync();

            using (Assert.EnterMultipleScope())
            {
                Assert.That((recovered.PolicyAction, recovered.Outcome), Is.EqualTo(("dump", "ok")));
                Assert.That((after?.Step, after?.NextAction, after?.NextDue), Is.EqualTo(((int?)2, "reset", (DateTimeOffset?)(restartAt + TimeSpan.FromSeconds(10)))));
                Assert.That(reset.PolicyAction, Is.EqualTo("reset"));
                Assert.That(rest.Select(r => r.Name), Has.None.EqualTo(PolicyService.EscalationStepName));
                Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.DumpGuestMemory, VmOperation.Reset }));
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    // A step whose call had started (an attempt record, no outcome) is reported, never repeated,
    // and, as the recovery rule does nothing more with such a decision, the escalation stops there.
    [Test]
    public async Task StepAttempted_ReportedNotRepeated_AndTheEscalationDoesNotGoOn()
    {
        using var directory = new TempDirectory();
        const string Attempt = "{\"type\":\"attempt\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:20+00:00\",\"of-id\":7,\"op\":\"dump-guest-memory\"}\n";
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), StartR1 + DumpDecided + Attempt);

        await using (PolicyRig rig = await StartAsync(directory, new DateTimeOffset(2025, 6, 1, 12, 1, 0, TimeSpan.Zero), running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            rig.Time.Advance(TimeSpan.FromMinutes(5));
            await rig.IdleAsync();
            UnactedJournalEntry entry = rig.Manager.Recovery!.UnactedEvents.Single();

            using (Assert.EnterMultipleScope())
            {
                Assert.That((entry.PolicyAction, entry.Attempted, entry.Recoverable), Is.EqualTo(("dump", true, false)));
                Assert.That(rig.Vm.Operations, Is.Empty);
                Assert.That(rig.Manager.GetDevice("wdt0")!.Escalation, Is.Null);
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    // A hand-written escalation record (the journal is untrusted): resumed only when it rebuilds
    // into a valid plan with a consistent step, else reported with the reason and nothing runs.
    [TestCase("inject-nmi; 10s dump; 10s reset", 1, 3, "dump", null, null, TestName = "WellFormed_Resumed")]
    [TestCase("inject-nmi; 0s dump; 10s reset", 1, 3, "dump", null, "is not a valid sequence", TestName = "ZeroDelay_Reported")]
    [TestCase("inject-nmi; 10s dump; 10s reset", 3, 3, "dump", null, "leaves no step to resume", TestName = "LastStepDone_Reported")]
    [TestCase("inject-nmi; 10s dump; 10s reset", 1, 4, "dump", null, "the journal says 4 steps", TestName = "StepCountMismatch_Reported")]
    [TestCase("inject-nmi; 10s dump; 10s reset", 1, 3, "poweroff", null, "the journal says 'poweroff' is next", TestName = "NextActionMismatch_Reported")]
    [TestCase("inject-nmi; 10s frobnicate", 1, 2, "frobnicate", null, "does not parse", TestName = "UnknownAction_Reported")]
    [TestCase("inject-nmi; 10s dump; 10s reset", 1, 3, "dump", "[1]", "a watchdog escalation with vCPUs", TestName = "WatchdogWithVcpus_Reported")]
    public async Task HandWrittenEscalationRecord_ResumedOnlyWhenItChecksOut(string plan, int step, int of, string next, string? vcpus, string? reason)
    {
        using var directory = new TempDirectory();
        string record = "{\"type\":\"escalation\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:05+00:00\",\"id\":5,\"device\":\"wdt0\",\"seq\":3,\"kind\":\"watchdog\","
            + $"\"plan\":\"{plan}\",\"step\":{step},\"of\":{of},\"next\":\"{next}\",\"due\":\"2025-06-01T12:00:15+00:00\"," + (vcpus is null ? string.Empty : $"\"vcpus\":{vcpus},") + "\"vm\":{\"running\":true}}\n";
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), StartR1 + record);

        await using (PolicyRig rig = await StartAsync(directory, new DateTimeOffset(2025, 6, 1, 12, 0, 10, TimeSpan.Zero), running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            HandledEvent[] atStart = await rig.IdleAsync();
            rig.Time.SetUtcNow(new DateTimeOffset(2025, 6, 1, 12, 0, 15, TimeSpan.Zero));
            HandledEvent[] atDue = await rig.IdleAsync();

            using (Assert.EnterMultipleScope())
            {
                Assert.That(rig.Manager.Recovery!.PendingEscalations, Has.Count.EqualTo(1), "the record's shape is valid: read, carried");
                if (reason is null)
                {
                    Assert.That(atStart, Is.Empty);
                    Assert.That(atDue.Select(h => (h.Name, h.PolicyAction)), Is.EqualTo(new[] { (PolicyService.EscalationStepName, "dump") }));
                    Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.DumpGuestMemory }));
                }
                else
                {
                    Assert.That(atStart.Select(h => h.Name), Is.EqualTo(new[] { "RECOVERY" }));
                    Assert.That(atStart[0].Note, Does.Contain("was not resumed after a restart").And.Contain(reason));
                    Assert.That(atDue, Is.Empty);
                    Assert.That(rig.Vm.Operations, Is.Empty);
                    Assert.That(rig.Manager.GetDevice("wdt0")!.Escalation, Is.Null);
                }
            }
        }

        if (reason is not null)
        {
            await AssertNothingLeftAsync(directory);
        }
    }

    // A record of the wrong shape is a corrupt line: counted, never resumed. planSteps > 0: a plan
    // of that many steps, longer than any valid one (bounded like every journal value).
    [TestCase("\"kind\":\"bogus\"", 0)]
    [TestCase("\"kind\":\"vcpu-stall\",\"vcpus\":[-1]", 0)]
    [TestCase("\"kind\":\"vcpu-stall\",\"vcpus\":\"1\"", 0)]
    [TestCase("\"kind\":\"watchdog\"", 120)]
    public async Task MalformedEscalationRecord_IsACorruptLine_NothingRuns(string kind, int planSteps)
    {
        using var directory = new TempDirectory();
        string plan = "inject-nmi" + string.Concat(Enumerable.Repeat("; 10s dump", planSteps)) + "; 10s reset";
        string record = "{\"type\":\"escalation\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:05+00:00\",\"id\":5,\"device\":\"wdt0\",\"seq\":3," + kind
            + $",\"plan\":\"{plan}\",\"step\":1,\"of\":{planSteps + 2},\"next\":\"{(planSteps > 0 ? "dump" : "reset")}\",\"due\":\"2025-06-01T12:00:15+00:00\",\"vm\":{{\"running\":true}}}}\n";
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), StartR1 + record);

        await using PolicyRig rig = await StartAsync(directory, new DateTimeOffset(2025, 6, 1, 12, 0, 10, TimeSpan.Zero), running: true);
        await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
        rig.Time.Advance(TimeSpan.FromMinutes(1));
        HandledEvent[] handled = await rig.IdleAsync();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Manager.Recovery!.CorruptLines, Is.EqualTo(1));
            Assert.That(rig.Manager.Recovery!.PendingEscalations, Is.Empty);
            Assert.That(handled, Is.Empty);
            Assert.That(rig.Vm.Operations, Is.Empty);
        }
    }

    // First run: the watchdog expires, step 1 (inject-nmi) runs, and 3 s later the service stops.
    private static async Task<(DateTimeOffset Due, DateTimeOffset StoppedAt)> RunStepOneAsync(TempDirectory directory)
    {
        await using PolicyRig first = await StartAsync(directory, at: null, running: true);
        await ExpireAsync(first);
        HandledEvent nmi = await first.NextAsync("WATCHDOG");
        Assert.That((nmi.PolicyAction, first.Vm.Operations), Is.EqualTo(("inject-nmi", new[] { VmOperation.InjectNmi })));
        DateTimeOffset due = first.Manager.GetDevice("wdt0")!.Escalation!.NextDue;
        first.Time.Advance(TimeSpan.FromSeconds(3));
        await first.IdleAsync();
        return (due, first.Time.GetUtcNow());
    }

    // The next start finds nothing pending and makes no call.
    private static async Task AssertNothingLeftAsync(TempDirectory directory, string id = "wdt0", DateTimeOffset? at = null)
    {
        await using PolicyRig again = await StartAsync(directory, at ?? new DateTimeOffset(2025, 6, 2, 0, 0, 0, TimeSpan.Zero), running: true, id: id);
        await again.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
        again.Time.Advance(TimeSpan.FromMinutes(5));
        await again.IdleAsync();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(again.Manager.Recovery!.PendingEscalations, Is.Empty, "no escalation left pending");
            Assert.That(again.Manager.Recovery!.UnactedEvents, Is.Empty, "nothing left pending");
            Assert.That(again.Vm.Operations, Is.Empty, "nothing carried out twice");
        }
    }

    // A rig whose fake clock starts at 'at' (where the previous run stopped) and whose VM control reports the run state.
    private static async Task<PolicyRig> StartAsync(TempDirectory directory, DateTimeOffset? at, bool running, Action<VirtioPanicOptions>? configure = null, string id = "wdt0")
    {
        PolicyRig rig = await PolicyRig.StartAsync(s_staged, configure, directory: directory, start: false, deviceId: id);
        rig.Vm.RunState = running;
        if (at is { } start)
        {
            rig.Time.SetUtcNow(start);
        }

        await rig.Host.StartAsync();
        return rig;
    }

    // Boots, arms, and lets the 5 s watchdog expire.
    private static async Task ExpireAsync(PolicyRig rig)
    {
        rig.Guest.Boot();
        rig.Guest.Heartbeat();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
        rig.Time.Advance(TimeSpan.FromSeconds(5));
    }

    private static JsonElement[] Records(PolicyRig rig) => [.. rig.JournalLines().Select(l => JsonDocument.Parse(l).RootElement)];

    private static string? Type(JsonElement record) => record.GetProperty("type").GetString();
}
