using System.Diagnostics;
using System.Text;
using System.Text.Json;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests.Journal;

// Nothing lost: what is journaled survives the process, a torn last line is tolerated, and events
// journaled but never acted on are reported at the next start.
public sealed class JournalTests
{
    [Test]
    public async Task ChildKilledBetweenJournalAppendAndAction_EventReportedAfterRestart()
    {
        using var directory = new TempDirectory();
        string journal = directory.File("journal.jsonl");
        using (Process child = CrashChildProcess.Start("block", journal))
        {
            try
            {
                Assert.That(await CrashChildProcess.ReadLineAsync(child, TimeSpan.FromSeconds(60)), Is.EqualTo("ACTING"));
                Assert.That(await CrashChildProcess.ReadLineAsync(child, TimeSpan.FromSeconds(60)), Is.EqualTo("ACCEPTED"));
            }
            finally
            {
                CrashChildProcess.KillAndWait(child);
            }
        }

        await using PolicyRig rig = await PolicyRig.StartAsync(directory: directory);
        JournalRecoveryReport report = rig.Manager.Recovery!;

        Assert.Multiple(() =>
        {
            // The first panic was decided, its action never finished; the second was accepted (the
            // guest's write returned) but still waited in the device's channel: journaled on acceptance.
            Assert.That(report.UnactedEvents.Select(e => (e.DeviceId, e.Name, e.Sequence, e.PolicyAction)),
                Is.EqualTo(new[] { ("crash-child", "GUEST_PANICKED", 1L, "destroy"), ("crash-child", "GUEST_PANICKED", 2L, string.Empty) }));
            Assert.That(report.TornTrailingBytes, Is.Zero);
        });

        // Reported once: the next start finds them marked recovered.
        await rig.Host.StopAsync();
        await using PolicyRig again = await PolicyRig.StartAsync(directory: directory);
        Assert.That(again.Manager.Recovery!.UnactedEvents, Is.Empty);
    }

    // kill -9 at random moments of a panic storm on four devices (rotating the journal every 64 KiB
    // meanwhile): every panic whose panic_events write returned is either acted on (its decision
    // has an outcome) or reported at the restart, never both, and nothing is recorded twice.
    [Test]
    public async Task ChildKilledAtRandomDuringPanicStorm_EveryAcceptedPanicIsActedOnOrReportedOnce()
    {
        int seed = Random.Shared.Next();
        var random = new Random(seed);
        for (int round = 0; round < 3; round++)
        {
            using var directory = new TempDirectory();
            string journal = directory.File("journal.jsonl");
            var acked = new List<(string Device, long Sequence)>();
            using (Process child = CrashChildProcess.Start("storm", journal, "4"))
            {
                Task<string> rest;
                try
                {
                    string first = await CrashChildProcess.ReadLineAsync(child, TimeSpan.FromSeconds(60));
                    Assert.That(first, Does.StartWith("ack "));

                    // Keep reading, so the child never blocks on a full pipe.
                    rest = child.StandardOutput.ReadToEndAsync();
                    await Task.Delay(random.Next(20, 700));
                }
                finally
                {
                    CrashChildProcess.KillAndWait(child);
                }

                // Whatever the child printed before it died (complete lines only).
                string printed = await rest.WaitAsync(TimeSpan.FromSeconds(10));
                foreach (string line in printed.Split('\n')[..^1])
                {
                    string[] parts = line.Split(' ');
                    if (parts.Length == 3 && parts[0] == "ack" && long.TryParse(parts[2], out long sequence))
                    {
                        acked.Add((parts[1], sequence));
                    }
                }
            }

            (Dictionary<(string Device, long Sequence), List<(string Run, long Id)>> decisions, HashSet<(string Run, long Id)> outcomes) = ReadJournalFiles(journal);
            await using PolicyRig rig = await PolicyRig.StartAsync(directory: directory);
            JournalRecoveryReport report = rig.Manager.Recovery!;
            var reported = report.UnactedEvents.Select(e => (e.DeviceId, e.Sequence)).ToList();
            string context = $"seed {seed}, round {round}: {acked.Count} acknowledged, {decisions.Count} decided, {reported.Count} reported";

            Assert.Multiple(() =>
            {
                Assert.That(acked, Is.Not.Empty, context);
                Assert.That(reported, Is.Unique, context);
                Assert.That(decisions.Values.Where(d => d.Count > 1), Is.Empty, "a panic decided twice; " + context);
                Assert.That(report.CorruptLines, Is.Zero, context);
                foreach ((string Device, long Sequence) ack in acked)
                {
                    bool acted = decisions.TryGetValue(ack, out List<(string Run, long Id)>? decided) && outcomes.Contains(decided[0]);
                    bool inReport = reported.Contains(ack);
                    Assert.That(acted ^ inReport, Is.True, $"{ack}: acted {acted}, reported {inReport}; {context}");
                }
            });

            // Repaired and reported once: the active file is whole lines, and the next start reports nothing.
            await rig.Host.StopAsync();
            Assert.That(File.ReadAllLines(journal), Has.All.StartWith("{").And.All.EndWith("}"));
            await using PolicyRig again = await PolicyRig.StartAsync(directory: directory);
            Assert.That(again.Manager.Recovery!.UnactedEvents, Is.Empty, context);
        }
    }

    // Journal on acceptance, eventq path: the device uses the guest's record buffer (the guest sees
    // it accepted) only after the record is journaled, even while the service is still busy with
    // an earlier event and has not read this one from the device.
    [Test]
    public async Task EventRecord_AcceptedWhileTheServiceIsBusy_IsJournaledBeforeTheGuestSeesItAccepted()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Restart, StormThreshold = 0 });
        using var busy = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        rig.Vm.OnReset = () =>
        {
            busy.Set();
            release.Wait(TimeSpan.FromSeconds(15));
        };
        rig.Guest.Boot();
        try
        {
            rig.Guest.Panic();
            Assert.That(busy.Wait(TimeSpan.FromSeconds(15)), Is.True, "the first panic reached the VM control");
            rig.Guest.PanicRecord("second", 1);
            string[] lines = rig.JournalLines();
            Assert.Multiple(() =>
            {
                Assert.That(lines.Count(l => l.Contains("\"type\":\"accepted\"", StringComparison.Ordinal) && l.Contains("GUEST_PANICKED", StringComparison.Ordinal)), Is.EqualTo(2));
                Assert.That(lines.Count(l => l.Contains("\"type\":\"event\"", StringComparison.Ordinal) && l.Contains("GUEST_PANICKED", StringComparison.Ordinal)), Is.EqualTo(1), "the second is not decided yet");
            });
        }
        finally
        {
            release.Set();
        }

        await rig.NextAsync("GUEST_PANICKED");
        await rig.NextAsync("GUEST_PANICKED");
    }

    [Test]
    public async Task TornTrailingLine_IsToleratedCutAndReported()
    {
        using var directory = new TempDirectory();
        string journal = directory.File("journal.jsonl");
        await using (PolicyRig first = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Destroy }, directory: directory))
        {
            first.Guest.Panic();
            await first.NextAsync("GUEST_PANICKED");
        }

        string complete = await File.ReadAllTextAsync(journal);
        const string Torn = "{\"type\":\"event\",\"run\":\"abc\",\"id\":9,\"dev";
        await File.AppendAllTextAsync(journal, Torn);

        await using PolicyRig rig = await PolicyRig.StartAsync(directory: directory);
        JournalRecoveryReport report = rig.Manager.Recovery!;
        string after = await File.ReadAllTextAsync(journal);

        Assert.Multiple(() =>
        {
            Assert.That(report.TornTrailingBytes, Is.EqualTo(Encoding.UTF8.GetByteCount(Torn)));
            Assert.That(report.UnactedEvents, Is.Empty, "the complete panic had its outcome");
            Assert.That(report.CorruptLines, Is.Zero);
            Assert.That(after, Does.StartWith(complete), "complete lines are kept");
            Assert.That(after, Does.Not.Contain(Torn));
            Assert.That(after, Does.Contain($"\"type\":\"torn\",\"run\":").And.Contain($"\"bytes\":{Torn.Length}"));
            Assert.That(after.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.All.StartWith("{").And.All.EndWith("}"));
        });
    }

    [Test]
    public async Task UnactedRecordWrittenInProcess_IsReportedAtNextStart_AndAfterTheTornTail()
    {
        using var directory = new TempDirectory();
        string journal = directory.File("journal.jsonl");
        await File.WriteAllTextAsync(journal,
            "{\"type\":\"start\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:00+00:00\",\"pid\":1}\n" +
            "{\"type\":\"event\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:01+00:00\",\"id\":1,\"device\":\"vm7\",\"seq\":4,\"name\":\"WATCHDOG\",\"action\":\"reset\",\"acting\":true}\n" +
            "{\"type\":\"event\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:02+00:00\",\"id\":2,\"device\":\"vm7\",\"seq\":5,\"name\":\"GUEST_PANICKED\",\"action\":\"destroy\",\"acting\":true}\n" +
            "{\"type\":\"outcome\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:02+00:00\",\"id\":2,\"result\":\"ok\",\"steps\":[]}\n" +
            "not json at all\n" +
            "{\"type\":\"outcome\",\"run\":\"r1\",\"id\":1,\"res");

        await using PolicyRig rig = await PolicyRig.StartAsync(directory: directory);
        JournalRecoveryReport report = rig.Manager.Recovery!;

        Assert.Multiple(() =>
        {
            Assert.That(report.UnactedEvents.Select(e => (e.DeviceId, e.Sequence, e.Name, e.PolicyAction)), Is.EqualTo(new[] { ("vm7", 4L, "WATCHDOG", "reset") }));
            Assert.That(report.CorruptLines, Is.EqualTo(1));
            Assert.That(report.TornTrailingBytes, Is.GreaterThan(0));
        });
    }

    // Decisions on events by (device, sequence) and the outcomes, over the active and rotated files.
    private static (Dictionary<(string Device, long Sequence), List<(string Run, long Id)>> Decisions, HashSet<(string Run, long Id)> Outcomes) ReadJournalFiles(string journal)
    {
        var decisions = new Dictionary<(string Device, long Sequence), List<(string Run, long Id)>>();
        var outcomes = new HashSet<(string Run, long Id)>();
        var carried = new HashSet<(string Run, long Id)>();
        foreach (string file in Directory.GetFiles(Path.GetDirectoryName(journal)!, Path.GetFileName(journal) + "*"))
        {
            foreach (string line in File.ReadAllLines(file))
            {
                JsonElement record;
                try
                {
                    record = JsonDocument.Parse(line).RootElement;
                }
                catch (JsonException)
                {
                    continue;
                }

                string type = record.GetProperty("type").GetString()!;
                var key = (record.GetProperty("run").GetString()!, record.TryGetProperty("id", out JsonElement id) ? id.GetInt64() : 0);
                if (type == "outcome")
                {
                    outcomes.Add(key);
                }
                else if (type == "event" && carried.Add(key))
                {
                    // A rotation carries a pending decision into the next file verbatim: the same record, counted once.
                    var target = (record.GetProperty("device").GetString()!, record.GetProperty("seq").GetInt64());
                    if (!decisions.TryGetValue(target, out List<(string Run, long Id)>? list))
                    {
                        list = [];
                        decisions[target] = list;
                    }

                    list.Add(key);
                }
            }
        }

        return (decisions, outcomes);
    }
}
