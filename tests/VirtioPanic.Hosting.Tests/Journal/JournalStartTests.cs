using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging.Testing;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests.Journal;

// Start never fails because of the journal: an oversized file opens in bounded time and memory,
// a full disk makes the service run degraded (reported once, in a metric and in the status)
// while the device keeps working; files and directories are created owner-only.
public sealed class JournalStartTests
{
    private const UnixFileMode OwnerFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode OwnerDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    [Test]
    public async Task Start_JournalOver2GiB_ReadsOnlyItsTailReportsTheUnactedEventAndRotatesIt()
    {
        using var directory = new TempDirectory();
        string journal = directory.File("journal.jsonl");
        const long Size = 3L << 30;
        byte[] tail = Encoding.UTF8.GetBytes(
            "\n{\"type\":\"start\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:00+00:00\",\"pid\":1}\n" +
            "{\"type\":\"event\",\"run\":\"r1\",\"time\":\"2025-06-01T12:00:01+00:00\",\"id\":1,\"device\":\"vm7\",\"seq\":4,\"name\":\"WATCHDOG\",\"action\":\"reset\",\"acting\":true}\n");
        using (var file = new FileStream(journal, FileMode.CreateNew, FileAccess.Write))
        {
            // Sparse: 3 GiB of holes, then a valid tail; nothing like 3 GiB is written.
            file.SetLength(Size - tail.Length);
            file.Seek(0, SeekOrigin.End);
            file.Write(tail);
        }

        await using PolicyRig rig = await PolicyRig.StartAsync(directory: directory, start: false);
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        await rig.Host.StartAsync();
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        JournalRecoveryReport report = rig.Manager.Recovery!;
        rig.Guest.Panic();
        HandledEvent handled = await rig.NextAsync("GUEST_PANICKED");

        Assert.Multiple(() =>
        {
            Assert.That(report.UnactedEvents.Select(e => (e.DeviceId, e.Sequence, e.PolicyAction)), Is.EqualTo(new[] { ("vm7", 4L, "reset") }));
            Assert.That(report.SkippedBytes, Is.GreaterThan(Size - (10L << 20)), "only the last JournalMaxFileSize + 1 MiB is read");
            Assert.That(allocated, Is.LessThan(64L << 20), "start-up memory does not grow with the file");
            Assert.That(new FileInfo(journal + ".1").Length, Is.EqualTo(Size), "the oversized file was rotated away whole");
            Assert.That(new FileInfo(journal).Length, Is.LessThan(64 * 1024));
            Assert.That(rig.Manager.GetStatus().JournalError, Is.Null);
            Assert.That(handled.Journaled, Is.True);
        });
    }

    [Test]
    public async Task Start_FullDiskOnRestart_RunsDegradedReportsItOnceAndKeepsActing()
    {
        using var directory = new TempDirectory();
        string mount = directory.File("small");
        Directory.CreateDirectory(mount);
        Run("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mount);
        try
        {
            string journal = Path.Combine(mount, "journal.jsonl");
            string filler = Path.Combine(mount, "filler");
            var policy = new DevicePolicy { OnPanic = PanicAction.Destroy };
            await using (PolicyRig first = await PolicyRig.StartAsync(policy, o => o.JournalPath = journal, directory: directory))
            {
                first.Guest.Panic();
                Assert.That((await first.NextAsync("GUEST_PANICKED")).Journaled, Is.True);
            }

            FillUp(filler);
            FillUp(journal);

            await using PolicyRig rig = await PolicyRig.StartAsync(policy, o => o.JournalPath = journal, directory: directory, services: s => s.AddFakeLogging());
            FakeLogCollector logs = rig.Host.Services.GetFakeLogCollector();
            var meters = rig.Host.Services.GetRequiredService<IMeterFactory>();
            using var degraded = new MetricCollector<int>(meters, "VirtioPanic.Hosting", "virtiopanic.journal.degraded");
            using var failures = new MetricCollector<long>(meters, "VirtioPanic.Hosting", "virtiopanic.journal.failures");
            degraded.RecordObservableInstruments();
            JsonElement status = JsonDocument.Parse(rig.Manager.GetStatusJson()).RootElement;

            rig.Guest.Panic();
            HandledEvent whileFull = await rig.NextAsync("GUEST_PANICKED");
            rig.Guest.Panic();
            await rig.NextAsync("GUEST_PANICKED");
            int degradedLines = logs.GetSnapshot().Count(r => r.Id.Id == 6035);

            File.Delete(filler);
            rig.Guest.Panic();
            HandledEvent afterwards = await rig.NextAsync("GUEST_PANICKED");
            degraded.RecordObservableInstruments();

            Assert.Multiple(() =>
            {
                Assert.That(rig.Manager.IsRunning, Is.True, "the start did not fail");
                Assert.That(status.GetProperty("journal-degraded").GetBoolean(), Is.True);
                Assert.That(status.GetProperty("journal-error").GetString(), Does.Contain("IOException"));
                Assert.That(degraded.GetMeasurementSnapshot()[0].Value, Is.EqualTo(1));
                Assert.That(degraded.LastMeasurement!.Value, Is.Zero, "writes succeed again once there is space");
                Assert.That(failures.GetMeasurementSnapshot().Sum(m => m.Value), Is.GreaterThan(0));
                Assert.That(degradedLines, Is.EqualTo(1), "reported once, not per event");
                Assert.That(whileFull.Journaled, Is.False);
                Assert.That(whileFull.Steps.Select(step => (step.Operation, step.Succeeded)), Is.EqualTo(new[] { (VmOperation.PowerOff, true) }), "acted on while the journal could not record it");
                Assert.That(rig.Vm.Operations, Does.Contain(VmOperation.PowerOff));
                Assert.That(afterwards.Journaled, Is.True);
                Assert.That(rig.Manager.GetStatus().JournalError, Is.Null);
                Assert.That(logs.GetSnapshot().Count(r => r.Id.Id == 6036), Is.EqualTo(1), "the end of degraded mode is reported once");
            });
        }
        finally
        {
            Run("umount", mount);
        }
    }

    [Test]
    public async Task Start_NestedJournalAndDumpDirectories_AreCreatedOwnerOnly()
    {
        using var directory = new TempDirectory();
        string state = directory.File("state");
        string journal = Path.Combine(state, "journals", "journal.jsonl");
        string dumps = Path.Combine(state, "dumps", "vm");
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.CoredumpDestroy }, o =>
        {
            o.JournalPath = journal;
            o.DumpDirectory = dumps;
        }, directory: directory);
        rig.Guest.Panic();
        await rig.NextAsync("GUEST_PANICKED");

        Assert.Multiple(() =>
        {
            Assert.That(rig.Vm.DumpPaths.Single(), Does.StartWith(dumps));
            Assert.That(File.GetUnixFileMode(journal), Is.EqualTo(OwnerFile));
            Assert.That(File.GetUnixFileMode(Path.GetDirectoryName(journal)!), Is.EqualTo(OwnerDirectory));
            Assert.That(File.GetUnixFileMode(state), Is.EqualTo(OwnerDirectory));
            Assert.That(File.GetUnixFileMode(dumps), Is.EqualTo(OwnerDirectory));
            Assert.That(File.GetUnixFileMode(Path.GetDirectoryName(dumps)!), Is.EqualTo(OwnerDirectory));
        });
    }

    // Writes until the file system says it is full (the last page of an existing file included).
    private static void FillUp(string path)
    {
        using var file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite, bufferSize: 0);
        byte[] chunk = new byte[4096];
        chunk.AsSpan().Fill((byte)'\n');
        int size = chunk.Length;
        for (int i = 0; i < 100_000; i++)
        {
            try
            {
                file.Write(chunk, 0, size);
            }
            catch (IOException)
            {
                if (size == 1)
                {
                    return;
                }

                size = 1;
            }
        }

        Assert.Fail($"{path}: the file system never filled up");
    }

    // Runs a command as root (mount, umount), bounded in time; fails the test if it fails.
    private static void Run(string command, params string[] args)
    {
        var start = new ProcessStartInfo(command) { RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.Kill();
            Assert.Fail($"{command} did not finish");
        }

        Assert.That(process.ExitCode, Is.Zero, $"{command} {string.Join(' ', args)} failed (the full-disk test mounts a 256 KiB tmpfs and needs root): {process.StandardError.ReadToEnd()}");
    }
}
