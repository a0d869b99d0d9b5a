using System.Diagnostics;
using System.Text.Json;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Tests.Qmp;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests.Journal;

// After a restart, a decision an earlier run journaled but did not carry out is carried out once
// the VMM answers, if the VM is still in the state the decision was made for, and reported
// otherwise; never carried out twice (PolicyService.Recovery.cs).
public sealed class RecoveryTests
{
    private const string Start = "{\"type\":\"start\",\"run\":\"r1\",\"time\":\"2025-06-01T11:00:00+00:00\",\"pid\":1}\n";

    // An expiry decided as reset for a running VM; the process died before the call (no attempt record).
    private const string ResetDecided = "{\"type\":\"event\",\"run\":\"r1\",\"time\":\"2025-06-01T11:00:01+00:00\",\"id\":1,\"device\":\"wdt0\",\"seq\":3,\"name\":\"WATCHDOG\",\"action\":\"reset\",\"acting\":true,\"vm\":{\"running\":true}}\n";

    [Test]
    public async Task DecidedNotAttempted_VmStillRunning_CarriedOutOnceAfterRestart()
    {
        using var directory = new TempDirectory();
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), Start + ResetDecided);

        await using (PolicyRig rig = await StartWithRunStateAsync(directory, running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            HandledEvent recovered = await rig.NextAsync("RECOVERY");
            UnactedJournalEntry entry = rig.Manager.Recovery!.UnactedEvents.Single();
            string[] lines = rig.JournalLines();
            long recoverId = Id(lines.Single(l => Type(l) == "recover"));

            using (Assert.EnterMultipleScope())
            {
                Assert.That((entry.Recoverable, entry.Attempted, entry.VmRunning), Is.EqualTo((true, false, (bool?)true)));
                Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.Reset }), "carried out once");
                Assert.That(rig.Vm.BootReasonsAtReset, Is.EqualTo(new[] { WatchdogBootReason.Watchdog }), "the boot reason is set before the reset, as on the first run");
                Assert.That((recovered.PolicyAction, recovered.Outcome, recovered.Journaled), Is.EqualTo(("reset", "ok", true)));
                Assert.That(rig.Vm.StateQueries, Is.EqualTo(1), "query-status once the VMM answered");
                Assert.That(lines.Count(l => Type(l) == "attempt" && l.Contains($"\"of-id\":{recoverId}", StringComparison.Ordinal)), Is.EqualTo(1), "the attempt is journaled before the call");
                Assert.That(lines.Count(l => Type(l) == "outcome" && Id(l) == recoverId && l.Contains("\"result\":\"ok\"", StringComparison.Ordinal)), Is.EqualTo(1));
                Assert.That(recovered.Json, Does.StartWith("{\"event\":\"VIRTIO_WDT_RECOVERY\",\"timestamp\":"));
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    [Test]
    public async Task DecidedNotAttempted_VmNowPaused_ReportedNotCarriedOut()
    {
        using var directory = new TempDirectory();
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), Start + ResetDecided);

        await using (PolicyRig rig = await StartWithRunStateAsync(directory, running: false))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            HandledEvent reported = await rig.NextAsync("RECOVERY");
            string outcome = rig.JournalLines().Single(l => Type(l) == "outcome");

            using (Assert.EnterMultipleScope())
            {
                Assert.That(rig.Vm.Operations, Is.Empty);
                Assert.That(reported.Steps, Is.Empty);
                Assert.That(reported.Note, Does.Contain("the VM is paused now; the decision was made for a running VM"));
                Assert.That(outcome, Does.Contain("\"result\":\"not-acted\"").And.Contain("the VM is paused now"));
                Assert.That(rig.JournalLines().Where(l => Type(l) == "attempt"), Is.Empty);
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    [Test]
    public async Task AttemptedDecision_IsReportedNeverRepeated()
    {
        using var directory = new TempDirectory();
        const string Attempt = "{\"type\":\"attempt\",\"run\":\"r1\",\"time\":\"2025-06-01T11:00:01+00:00\",\"of-id\":1,\"op\":\"reset\"}\n";
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), Start + ResetDecided + Attempt);

        await using (PolicyRig rig = await StartWithRunStateAsync(directory, running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            UnactedJournalEntry entry = rig.Manager.Recovery!.UnactedEvents.Single();

            using (Assert.EnterMultipleScope())
            {
                Assert.That((entry.Name, entry.PolicyAction, entry.Attempted, entry.Recoverable), Is.EqualTo(("WATCHDOG", "reset", true, false)));
                Assert.That(rig.Vm.Operations, Is.Empty, "the reset may have been made: never again");
                Assert.That(rig.Vm.StateQueries, Is.Zero);
                Assert.That(rig.JournalLines().Where(l => Type(l) == "recover"), Is.Empty);
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    // The VMM comes back some time after the restart: the decision waits for it, then is carried out once.
    [Test]
    public async Task VmmReachableOnlyLater_DecisionWaitsForIt_ThenCarriedOutOnce()
    {
        using var directory = new TempDirectory();
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), Start + ResetDecided);

        await using (PolicyRig rig = await PolicyRig.StartAsync(directory: directory, start: false, configure: o => o.RecoveryTimeout = TimeSpan.FromMinutes(1)))
        {
            rig.Vm.RunState = null;   // the monitor does not answer yet
            await rig.Host.StartAsync();
            Task recovered = rig.Manager.WhenRecoveredAsync();
            await AdvanceAsync(rig, TimeSpan.FromSeconds(30), () => rig.Vm.StateQueries >= 3);
            using (Assert.EnterMultipleScope())
            {
                Assert.That(recovered.IsCompleted, Is.False, "still waiting for the VMM");
                Assert.That(rig.Vm.StateQueries, Is.GreaterThanOrEqualTo(3), "asked again while it did not answer");
                Assert.That(rig.Vm.Operations, Is.Empty);
            }

            rig.Vm.RunState = true;
            await AdvanceAsync(rig, TimeSpan.FromSeconds(30), () => recovered.IsCompleted);
            await recovered.WaitAsync(TimeSpan.FromSeconds(15));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.Reset }));
        }

        await AssertNothingLeftAsync(directory);
    }

    // The VMM never answers within RecoveryTimeout: reported, not carried out.
    [Test]
    public async Task VmmNeverReachable_ReportedAfterRecoveryTimeout()
    {
        using var directory = new TempDirectory();
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), Start + ResetDecided);

        await using (PolicyRig rig = await PolicyRig.StartAsync(directory: directory, start: false, configure: o => o.RecoveryTimeout = TimeSpan.FromSeconds(10)))
        {
            rig.Vm.RunState = null;
            await rig.Host.StartAsync();
            Task recovered = rig.Manager.WhenRecoveredAsync();
            await AdvanceAsync(rig, TimeSpan.FromSeconds(60), () => recovered.IsCompleted);
            await recovered.WaitAsync(TimeSpan.FromSeconds(15));
            HandledEvent reported = await rig.NextAsync("RECOVERY");
            using (Assert.EnterMultipleScope())
            {
                Assert.That(rig.Vm.Operations, Is.Empty);
                Assert.That(reported.Note, Does.Contain("did not answer query-status within 00:00:10"));
                Assert.That(rig.Vm.StateQueries, Is.InRange(2, 12), "asked again (once a second) until the timeout");
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    // Moves the rig's fake clock on in 100 ms steps, up to 'limit' of fake time or until 'done'
    // (the recovery's poll registers its next one-second wait on another thread).
    private static async Task AdvanceAsync(PolicyRig rig, TimeSpan limit, Func<bool> done)
    {
        for (TimeSpan moved = TimeSpan.Zero; moved < limit && !done(); moved += TimeSpan.FromMilliseconds(100))
        {
            rig.Time.Advance(TimeSpan.FromMilliseconds(100));
            await Task.Delay(5);
        }
    }

    // The guest reported something in this run before the VMM answered: the old decision is not
    // carried out as well (it could act twice: on the new event and on the old decision).
    [Test]
    public async Task DeviceReportedSinceTheRestart_OldDecisionReportedNotCarriedOut()
    {
        using var directory = new TempDirectory();
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), Start + ResetDecided);

        await using (PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Preserve, StormThreshold = 0 }, directory: directory, start: false, configure: o => o.RecoveryTimeout = TimeSpan.FromMinutes(1)))
        {
            rig.Vm.RunState = null;   // the monitor does not answer yet
            await rig.Host.StartAsync();
            rig.Guest.Boot();
            rig.Guest.Panic();
            await rig.NextAsync("GUEST_PANICKED");
            rig.Vm.RunState = true;
            Task recovered = rig.Manager.WhenRecoveredAsync();
            await AdvanceAsync(rig, TimeSpan.FromSeconds(30), () => recovered.IsCompleted);
            await recovered.WaitAsync(TimeSpan.FromSeconds(15));
            HandledEvent reported = await rig.NextAsync("RECOVERY");
            using (Assert.EnterMultipleScope())
            {
                Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.Pause }), "only the new panic's preserve, not the old reset");
                Assert.That(reported.Note, Does.Contain("since this process started"));
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    // A decision without a journaled VM state (a VM control that cannot tell it) is only reported.
    [Test]
    public async Task DecidedWithoutVmState_IsReportedNotCarriedOut()
    {
        using var directory = new TempDirectory();
        await File.WriteAllTextAsync(directory.File("journal.jsonl"), Start + ResetDecided.Replace(",\"vm\":{\"running\":true}", string.Empty, StringComparison.Ordinal));

        await using (PolicyRig rig = await StartWithRunStateAsync(directory, running: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            using (Assert.EnterMultipleScope())
            {
                Assert.That(rig.Manager.Recovery!.UnactedEvents.Single().Recoverable, Is.False);
                Assert.That(rig.Vm.Operations, Is.Empty);
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    // The grace window is the window between decision and action: a process stopped in it leaves
    // the deferring decision open; the next run arms the deadline again at its due time and the
    // ordinary deadline path carries it out, once.
    [Test]
    public async Task GraceDecision_ProcessStoppedInTheWindow_DeadlineArmedAgain_ActedOnceAfterRestart()
    {
        using var directory = new TempDirectory();
        var policy = new DevicePolicy { OnPanic = PanicAction.Restart, PanicGracePeriod = TimeSpan.FromSeconds(30), StormThreshold = 0 };
        await using (PolicyRig first = await StartWithRunStateAsync(directory, running: true, policy))
        {
            first.Guest.Boot();
            first.Guest.Panic();
            HandledEvent grace = await first.NextAsync("GUEST_PANICKED");
            Assert.That(grace.PolicyAction, Is.EqualTo("grace"));
            string decision = first.JournalLines().Single(l => Type(l) == "event" && l.Contains("GUEST_PANICKED", StringComparison.Ordinal));
            Assert.That(decision, Does.Contain("\"vm\":{\"running\":true}").And.Contain("\"defer\":{\"kind\":\"panic-grace\",").And.Contain("\"action\":\"restart\"}"));
        }

        await using (PolicyRig second = await StartWithRunStateAsync(directory, running: true, policy))
        {
            await second.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            UnactedJournalEntry entry = second.Manager.Recovery!.UnactedEvents.Single();
            Assert.That((entry.PolicyAction, entry.Recoverable, entry.DeferredUntil.HasValue), Is.EqualTo(("restart", true, true)));
            Assert.That(entry.DeferredUntil!.Value, Is.GreaterThan(second.Time.GetUtcNow()), "the due time is still ahead on this clock");
            Assert.That(second.Vm.Operations, Is.Empty, "not before the grace window's end");

            second.Time.SetUtcNow(entry.DeferredUntil.Value + TimeSpan.FromSeconds(1));
            HandledEvent fired = await second.NextAsync("DEADLINE");
            string[] lines = second.JournalLines();
            long recoverId = Id(lines.Single(l => Type(l) == "recover"));

            using (Assert.EnterMultipleScope())
            {
                Assert.That((fired.PolicyAction, fired.Outcome), Is.EqualTo(("restart", "ok")));
                Assert.That(second.Vm.Operations, Is.EqualTo(new[] { VmOperation.Reset }));
                Assert.That(second.Vm.BootReasonsAtReset, Is.EqualTo(new[] { WatchdogBootReason.Panic }));
                Assert.That(lines.Count(l => Type(l) == "deadline" && l.Contains($"\"settles\":{recoverId}", StringComparison.Ordinal)), Is.EqualTo(1), "the deadline's decision settles the recover record");
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    // A guest reset during the re-armed window cancels it, as in an ordinary grace window.
    [Test]
    public async Task GraceRearmedAfterRestart_GuestResetsItself_NothingCarriedOut()
    {
        using var directory = new TempDirectory();
        var policy = new DevicePolicy { OnPanic = PanicAction.Restart, PanicGracePeriod = TimeSpan.FromSeconds(30), StormThreshold = 0 };
        await using (PolicyRig first = await StartWithRunStateAsync(directory, running: true, policy))
        {
            first.Guest.Boot();
            first.Guest.Panic();
            await first.NextAsync("GUEST_PANICKED");
        }

        await using (PolicyRig second = await StartWithRunStateAsync(directory, running: true, policy))
        {
            await second.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            HandledEvent reset = await second.Manager.NotifyGuestResetAsync(second.Guest.Device.Id);
            second.Time.SetUtcNow(second.Manager.Recovery!.UnactedEvents.Single().DeferredUntil!.Value + TimeSpan.FromSeconds(1));
            await second.IdleAsync();

            using (Assert.EnterMultipleScope())
            {
                Assert.That(reset.Note, Does.Contain("within the grace window; panic action cancelled"));
                Assert.That(second.Vm.Operations, Is.Empty);
            }
        }

        await AssertNothingLeftAsync(directory);
    }

    // kill -9 while the VMM executes the call (a real QmpVmControl in the child, this test's scripted
    // monitor, which never answers `quit`): the restart reports the decision and does not repeat it.
    [Test]
    public async Task ChildKilledDuringTheQmpCall_DecisionReportedNotRepeated()
    {
        using var directory = new TempDirectory();
        string journal = directory.File("journal.jsonl");
        using var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
        using (Process child = CrashChildProcess.Start("qmp", journal, monitor.SocketPath, "destroy"))
        {
            try
            {
                using FakeQmpMonitor.Connection connection = await monitor.AcceptAsync();
                await AnswerQueryStatusAsync(connection, running: true);
                Assert.That(await CrashChildProcess.ReadLineAsync(child, TimeSpan.FromSeconds(60)), Is.EqualTo("PANICKED"));
                using JsonDocument quit = await connection.ReadCommandAsync();
                Assert.That(quit.RootElement.GetProperty("execute").GetString(), Is.EqualTo("quit"));
            }
            finally
            {
                CrashChildProcess.KillAndWait(child);
            }
        }

        await using (PolicyRig rig = await StartWithRunStateAsync(directory, running: true, id: "crash-child"))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            UnactedJournalEntry entry = rig.Manager.Recovery!.UnactedEvents.Single();
            using (Assert.EnterMultipleScope())
            {
                Assert.That((entry.DeviceId, entry.Name, entry.PolicyAction), Is.EqualTo(("crash-child", "GUEST_PANICKED", "destroy")));
                Assert.That((entry.VmRunning, entry.Attempted, entry.Recoverable), Is.EqualTo(((bool?)true, true, false)));
                Assert.That(rig.Vm.Operations, Is.Empty);
            }
        }

        await AssertNothingLeftAsync(directory, "crash-child");
    }

    // kill -9 inside the grace window (the child decided `restart` after 30 s of grace): the restart
    // arms the deadline again and carries the restart out once.
    [Test]
    public async Task ChildKilledInTheGraceWindow_RestartCarriedOutOnceAfterRestart()
    {
        using var directory = new TempDirectory();
        string journal = directory.File("journal.jsonl");
        using var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
        using (Process child = CrashChildProcess.Start("qmp", journal, monitor.SocketPath, "grace"))
        {
            try
            {
                using FakeQmpMonitor.Connection connection = await monitor.AcceptAsync();
                await AnswerQueryStatusAsync(connection, running: true);
                Assert.That(await CrashChildProcess.ReadLineAsync(child, TimeSpan.FromSeconds(60)), Is.EqualTo("PANICKED"));
                Assert.That(await CrashChildProcess.ReadLineAsync(child, TimeSpan.FromSeconds(60)), Is.EqualTo("HANDLED grace"));
            }
            finally
            {
                CrashChildProcess.KillAndWait(child);
            }
        }

        await using (PolicyRig rig = await StartWithRunStateAsync(directory, running: true, new DevicePolicy { OnPanic = PanicAction.Restart, PanicGracePeriod = TimeSpan.FromSeconds(30), StormThreshold = 0 }, id: "crash-child", realClock: true))
        {
            await rig.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
            UnactedJournalEntry entry = rig.Manager.Recovery!.UnactedEvents.Single();
            Assert.That((entry.PolicyAction, entry.Recoverable), Is.EqualTo(("restart", true)));
            Assert.That(rig.Vm.Operations, Is.Empty, "not before the grace window's end");

            rig.Time.SetUtcNow(entry.DeferredUntil!.Value + TimeSpan.FromSeconds(1));
            HandledEvent fired = await rig.NextAsync("DEADLINE");
            using (Assert.EnterMultipleScope())
            {
                Assert.That((fired.PolicyAction, fired.Outcome), Is.EqualTo(("restart", "ok")));
                Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.Reset }));
            }
        }

        await AssertNothingLeftAsync(directory, "crash-child", realClock: true);
    }

    // The next start finds nothing pending and makes no call.
    private static async Task AssertNothingLeftAsync(TempDirectory directory, string id = "wdt0", bool realClock = false)
    {
        await using PolicyRig again = await StartWithRunStateAsync(directory, running: true, id: id, realClock: realClock);
        await again.Manager.WhenRecoveredAsync().WaitAsync(TimeSpan.FromSeconds(15));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(again.Manager.Recovery!.UnactedEvents, Is.Empty, "nothing left pending");
            Assert.That(again.Vm.Operations, Is.Empty, "nothing carried out twice");
        }
    }

    private static async Task<PolicyRig> StartWithRunStateAsync(TempDirectory directory, bool running, DevicePolicy? policy = null, string id = "wdt0", bool realClock = false)
    {
        PolicyRig rig = await PolicyRig.StartAsync(policy, directory: directory, start: false, deviceId: id);
        rig.Vm.RunState = running;
        if (realClock)
        {
            // A child wrote the journal on the real clock: start this rig's fake clock there.
            rig.Time.SetUtcNow(DateTimeOffset.UtcNow);
        }

        await rig.Host.StartAsync();
        return rig;
    }

    private static async Task AnswerQueryStatusAsync(FakeQmpMonitor.Connection connection, bool running) =>
        Assert.That(await connection.AnswerAsync(running ? """{"running": true, "status": "running"}""" : """{"running": false, "status": "paused"}"""), Is.EqualTo("query-status"));

    private static string Type(string line) => JsonDocument.Parse(line).RootElement.GetProperty("type").GetString()!;

    private static long Id(string line) => JsonDocument.Parse(line).RootElement.GetProperty("id").GetInt64();
}
