using System.Diagnostics;
using System.Reflection;
using System.Text;
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
        using (Process child = StartChild(journal))
        {
            try
            {
                Task<string?> line = child.StandardOutput.ReadLineAsync();
                Task done = await Task.WhenAny(line, Task.Delay(TimeSpan.FromSeconds(60)));
                Assert.That(done, Is.SameAs(line), "the child never reached the VM-control call: " + await ReadErrorAsync(child));
                Assert.That(await line, Is.EqualTo("ACTING"));
            }
            finally
            {
                KillAndWait(child);
            }
        }

        await using PolicyRig rig = await PolicyRig.StartAsync(directory: directory);
        JournalRecoveryReport report = rig.Manager.Recovery!;

        UnactedJournalEntry unacted = report.UnactedEvents.Single();
        Assert.Multiple(() =>
        {
            Assert.That(unacted.DeviceId, Is.EqualTo("crash-child"));
            Assert.That(unacted.Name, Is.EqualTo("GUEST_PANICKED"));
            Assert.That(unacted.Sequence, Is.EqualTo(1));
            Assert.That(unacted.PolicyAction, Is.EqualTo("destroy"));
            Assert.That(report.TornTrailingBytes, Is.Zero);
        });

        // Reported once: the next start finds it marked recovered.
        await rig.Host.StopAsync();
        await using PolicyRig again = await PolicyRig.StartAsync(directory: directory);
        Assert.That(again.Manager.Recovery!.UnactedEvents, Is.Empty);
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

    // Runs VirtioPanic.Hosting.CrashChild (copied next to the tests) on the tests' own runtime configuration and dependencies.
    private static Process StartChild(string journal)
    {
        string bin = AppContext.BaseDirectory;
        string tests = Path.GetFileNameWithoutExtension(Assembly.GetExecutingAssembly().Location);
        var start = new ProcessStartInfo(DotNetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { "exec", "--runtimeconfig", Path.Combine(bin, tests + ".runtimeconfig.json"), "--depsfile", Path.Combine(bin, tests + ".deps.json"), Path.Combine(bin, "VirtioPanic.Hosting.CrashChild.dll"), journal })
        {
            start.ArgumentList.Add(arg);
        }

        return Process.Start(start)!;
    }

    private static string DotNetHost()
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
        {
            return host;
        }

        string? process = Environment.ProcessPath;
        return process is not null && Path.GetFileNameWithoutExtension(process) == "dotnet" ? process : "dotnet";
    }

    private static async Task<string> ReadErrorAsync(Process child)
    {
        KillAndWait(child);
        return await child.StandardError.ReadToEndAsync();
    }

    // Kills the child by its own PID and waits a bounded time for it to go.
    private static void KillAndWait(Process child)
    {
        if (!child.HasExited)
        {
            child.Kill(entireProcessTree: false);
        }

        Assert.That(child.WaitForExit(TimeSpan.FromSeconds(10)), Is.True, $"child {child.Id} did not exit");
    }
}
