using System.Text.Json;
using VirtioPanic.Hosting.Journal;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests.Journal;

// The journal file itself: rotation by size with the pending records carried forward, a bounded
// number of kept files, owner-only modes, and group commit.
public sealed class EventJournalTests
{
    private static readonly DateTimeOffset s_now = new(2025, 6, 1, 12, 0, 0, TimeSpan.Zero);

    [Test]
    public void Append_PastMaxFileSize_RotatesKeepsMaxFilesAndCarriesPendingRecords()
    {
        using var directory = new TempDirectory();
        string path = directory.File("j.jsonl");
        using (EventJournal journal = Open(path, out _))
        {
            Decide(journal, "vm1", 1, acting: true);                 // never gets an outcome
            Accept(journal, "vm3", 7);                               // accepted, never decided
            Accept(journal, "vm4", 2);                               // accepted, decided much later
            for (int i = 1; i <= 300; i++)
            {
                long id = Decide(journal, "vm2", i, acting: true);
                Assert.That(journal.Append(new(JournalRecords.Outcome(journal.Run, id, s_now, "ok", []), true, JournalMarks.Closes, id)), Is.True);
            }

            Decide(journal, "vm4", 2, acting: false);
        }

        string[] files = [.. Directory.GetFiles(directory.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        string[] active = File.ReadAllLines(path);
        Assert.Multiple(() =>
        {
            Assert.That(files, Is.EqualTo(new[] { "j.jsonl", "j.jsonl.1", "j.jsonl.2" }), "the active file and MaxFiles rotated ones");
            Assert.That(new FileInfo(path).Length, Is.LessThanOrEqualTo(4096));
            Assert.That(new FileInfo(path + ".1").Length, Is.LessThanOrEqualTo(4096));
            Assert.That(active[0], Does.Contain("\"type\":\"rotated\""));
            Assert.That(active.Count(l => l.Contains("\"device\":\"vm1\"", StringComparison.Ordinal)), Is.EqualTo(1), "the pending decision is carried into the active file");
            Assert.That(active.Count(l => l.Contains("\"device\":\"vm3\"", StringComparison.Ordinal)), Is.EqualTo(1), "the pending acceptance too");
            Assert.That(files.SelectMany(f => File.ReadAllLines(directory.File(f))), Has.All.Matches<string>(IsJson));
            foreach (string file in files)
            {
                Assert.That(File.GetUnixFileMode(directory.File(file)), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite), file);
            }
        });

        using EventJournal reopened = Open(path, out JournalRecoveryReport report);
        Assert.Multiple(() =>
        {
            Assert.That(report.UnactedEvents.Select(e => (e.DeviceId, e.Sequence, e.PolicyAction)), Is.EqualTo(new[] { ("vm1", 1L, "destroy"), ("vm3", 7L, string.Empty) }));
            Assert.That(report.Records, Is.EqualTo(active.Length), "start-up reads the active file only");
            Assert.That(report.SkippedBytes, Is.Zero);
        });
    }

    // A backlog of accepted events almost as large as MaxFileSize (a storm the service has not caught
    // up with): rotating at the limit would copy the backlog again after every record or two (and
    // rotate the oldest files away at once). Each rotation waits until the file holds at least as
    // many new bytes as it carries, and no file grows past MaxFileSize + RotationSlack.
    [Test]
    public void Append_PendingRecordsNearMaxFileSize_EachRotationFollowsAsManyNewBytesAsItCarries()
    {
        using var directory = new TempDirectory();
        string path = directory.File("j.jsonl");
        const int MaxFiles = 200;
        long written = 0;
        using (EventJournal journal = Open(path, out _, maxFileSize: 4096, maxFiles: MaxFiles))
        {
            for (int i = 1; i <= 28; i++)
            {
                Accept(journal, "backlog", i);                        // accepted, never decided
            }

            long start = new FileInfo(path).Length;
            for (int i = 1; i <= 200; i++)
            {
                long id = Decide(journal, "busy", i, acting: true);
                byte[] outcome = JournalRecords.Outcome(journal.Run, id, s_now, "ok", []);
                Assert.That(journal.Append(new(outcome, true, JournalMarks.Closes, id)), Is.True);
                written += outcome.Length;
            }

            written += 200 * JournalRecords.Decision("event", journal.Run, 1, s_now, "busy", 1, "GUEST_PANICKED", "destroy", true, null, null).Length;
            Assert.That(start, Is.GreaterThan(3000), "the backlog alone is most of the 4 KiB limit");
        }

        string[] files = [.. Directory.GetFiles(directory.Path)];
        long header = File.ReadAllLines(path).TakeWhile(l => !l.Contains("\"device\":\"busy\"", StringComparison.Ordinal)).Sum(l => l.Length + 1L);
        using EventJournal reopened = Open(path, out JournalRecoveryReport report, maxFileSize: 4096, maxFiles: MaxFiles);
        Assert.Multiple(() =>
        {
            Assert.That(files, Has.Length.LessThan(MaxFiles), "nothing was rotated away");
            Assert.That(files.Length - 1, Is.LessThanOrEqualTo((written / header) + 1), $"rotations for {written} new bytes with a {header}-byte backlog carried each time");
            Assert.That(files.Select(f => new FileInfo(f).Length), Has.All.LessThanOrEqualTo(4096 + EventJournal.RotationSlack + 1024));
            Assert.That(report.UnactedEvents.Select(e => e.Sequence), Is.EqualTo(Enumerable.Range(1, 28).Select(i => (long)i)), "the backlog is carried into the active file");
            Assert.That(report.SkippedBytes, Is.Zero);
        });
    }

    [Test]
    public async Task Append_WhileTheWriterIsBusy_QueuedRecordsShareOneWriteAndFsync()
    {
        using var directory = new TempDirectory();
        using EventJournal journal = Open(directory.File("j.jsonl"), out _, maxFileSize: 1 << 20);
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        journal.BeforeWrite = () =>
        {
            if (!entered.IsSet)
            {
                entered.Set();
                release.Wait(TimeSpan.FromSeconds(30));
            }
        };
        long before = journal.Commits;

        // The first caller becomes the writer and is held before its write; 100 more queue meanwhile.
        Task<bool> first = Task.Run(() => journal.Append(Line(journal, "vm0", 1)));
        Assert.That(entered.Wait(TimeSpan.FromSeconds(30)), Is.True);
        ValueTask<bool>[] queued = [.. Enumerable.Range(1, 100).Select(i => journal.AppendAsync(Line(journal, "vm" + i, 1)))];
        bool anyDone = queued.Any(v => v.IsCompleted);
        release.Set();
        bool[] results = await Task.WhenAll(queued.Select(v => v.AsTask()));

        Assert.Multiple(() =>
        {
            Assert.That(anyDone, Is.False, "a queued record is not durable before its batch is written");
            Assert.That(first.Result, Is.True);
            Assert.That(results, Has.All.True);
            Assert.That(journal.Commits - before, Is.EqualTo(2), "one write for the first record, one for the hundred queued behind it");
            Assert.That(File.ReadAllLines(journal.Path), Has.Length.EqualTo(101 + 1), "start record and every appended one");
        });
    }

    [Test]
    public void Open_ExistingFileReadableByOthers_IsNarrowedToOwnerOnly()
    {
        using var directory = new TempDirectory();
        string nested = Path.Combine(directory.Path, "state", "journals");
        string path = Path.Combine(nested, "j.jsonl");
        using (Open(path, out _))
        {
        }

        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        using (Open(path, out _))
        {
        }

        Assert.Multiple(() =>
        {
            Assert.That(File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
            Assert.That(File.GetUnixFileMode(nested), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute));
            Assert.That(File.GetUnixFileMode(Path.GetDirectoryName(nested)!), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute));
        });
    }

    [Test]
    public void Open_RotationCutShortBetweenItsRenames_FindsTheNewFile()
    {
        using var directory = new TempDirectory();
        string path = directory.File("j.jsonl");
        using (EventJournal journal = Open(path, out _))
        {
            Decide(journal, "vm1", 1, acting: true);
        }

        // As Rotate leaves it between "active -> .1" and ".new -> active": the new file holds the pending record.
        File.Move(path, path + ".1");
        File.WriteAllLines(path + ".new", [.. File.ReadAllLines(path + ".1").Where(l => l.Contains("\"device\":\"vm1\"", StringComparison.Ordinal))]);

        using EventJournal reopened = Open(path, out JournalRecoveryReport report);
        Assert.Multiple(() =>
        {
            Assert.That(report.UnactedEvents.Select(e => e.DeviceId), Is.EqualTo(new[] { "vm1" }));
            Assert.That(File.Exists(path + ".new"), Is.False);
        });
    }

    private static bool IsJson(string line)
    {
        try
        {
            using var document = JsonDocument.Parse(line);
            return document.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static EventJournal Open(string path, out JournalRecoveryReport report, long maxFileSize = 4096, int maxFiles = 2) =>
        EventJournal.Open(new JournalSettings(path, maxFileSize, maxFiles), Guid.NewGuid().ToString("N")[..12], TimeProvider.System, _ => { }, null, out report);

    private static long Decide(EventJournal journal, string device, long sequence, bool acting)
    {
        long id = journal.NextId();
        byte[] line = JournalRecords.Decision("event", journal.Run, id, s_now, device, sequence, "GUEST_PANICKED", acting ? "destroy" : "log-only", acting, null, null);
        Assert.That(journal.Append(new(line, true, JournalMarks.Decides | (acting ? JournalMarks.Opens : JournalMarks.None), id, device, sequence)), Is.True);
        return id;
    }

    private static void Accept(EventJournal journal, string device, long sequence) => Assert.That(journal.Append(Line(journal, device, sequence)), Is.True);

    private static JournalItem Line(EventJournal journal, string device, long sequence)
    {
        long id = journal.NextId();
        return new(JournalRecords.Accepted(journal.Run, id, s_now, device, sequence, "GUEST_PANICKED"), true, JournalMarks.Accepts, id, device, sequence);
    }
}
