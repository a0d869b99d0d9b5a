using System.Buffers;
using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace VirtioPanic.Hosting.Journal;

// Design: the durable event journal, one JSON object per line (UTF-8, LF).
//
// Records (every one has "type", "run" = the service start that wrote it, "time"):
//   start      {"type":"start","run","time","pid"}
//   accepted   {"type":"accepted","run","id","time","device","seq","name"}: the device accepted a guest
//              report (journal on acceptance: written before the guest's write returns or its buffer
//              is used), resolved by a decision on that device with the same or a later "seq"
//   event      {"type":"event","run","id","time","device","seq","name","action","acting","note"?,"qmp":{...}}
//   deadline   {"type":"deadline"|"continue"|"guest-reset", same members as event, "qmp" null}
//   step       {"type":"step", same members as event (seq: the escalation's trigger), "qmp" null}: a later
//              step of an escalation, decided when its time came. Decisions that start, carry out or
//              cancel an escalation add "escalation" {"kind","plan","trigger-seq","step","of","next"?,
//              "next-after-ms"?} and "escalation-cancelled" {"kind","plan","trigger-seq","step","of",
//              "action","reason","code"}
//   outcome    {"type":"outcome","run","id","time","result","steps":[{"op","ok","error"?,"fallback-for"?,"ms","path"?}]}
//   recovered  {"type":"recovered","run","time","of-run","of-id"}: an unacted record was reported
//   attempt    {"type":"attempt","run","time","of-id","op"}: the first VM-control call of acting
//              decision of-id is about to be made; a restart reports that decision, never repeats it
//   recover    {"type":"recover","run","id","time","device","seq","name","action","acting":true,
//              "of-type","of-run","of-id","vm","defer"?}: an earlier run's decision that was decided
//              but not attempted, carried into this run to be carried out or reported
//   escalation {"type":"escalation","run","id","time","device","seq" (the trigger's),"kind","plan",
//              "step","of","next","due","vcpus"?,"vm"?,"settles-escalation"?,"of-run"?,"of-id"?}: the
//              device's escalation in progress after its last step, written after that step's calls
//              (before their outcome): step of "of" done, "next" due at "due" (absolute). Pending
//              until a later record of the device settles it ("settles-escalation": its id; the next
//              step's decision, a cancellation, a replacement, the last step) or an outcome with its
//              id reports it not resumed. At start each device's latest one is carried into the run
//              (of-run, of-id: the record it replaces) and resumed (PolicyService.Recovery.cs).
// Decision records may carry "vm":{"running"} (the VM's run state the decision was made for),
// "defer":{"kind","due","action"} (the decision armed a deadline: pending until a later record of
// the device "settles" it, when the deadline fires or is cancelled), "settles": id and
// "settles-escalation": id (the escalation record this decision advances, cancels or replaces).
//   torn       {"type":"torn","run","time","bytes"}: a torn last line was cut off at start
//   rotated    {"type":"rotated","run","time","carried"}: first line of a file a rotation started;
//              the "carried" records still pending follow it, verbatim
// A record with "acting": true expects an outcome record with the same (run, id). At start,
// pending records (acting without outcome, accepted without decision) with no recovered record
// are the events that were accepted or journaled but never acted on; they are reported once and
// then marked recovered.
//
// Files: Path is the active file; when a write would take it past MaxFileSize it is rotated to
// Path.1 (older ones shift to Path.2 .. Path.MaxFiles, the oldest is deleted) and the new active
// file starts with every record still pending, so start-up reads the active file only, and of it
// at most ReadWindow bytes from its end (JournalReader). When the pending records are a large share
// of MaxFileSize, a rotation waits until the file holds as many new bytes as it would carry, up to
// MaxFileSize + RotationSlack (Writer.RotationDue: no rotation storm under a backlog). A rotation writes the new file as
// Path.new and fsyncs it before renaming anything: a crash leaves either Path complete (Path.new
// is then deleted) or, between the two renames, Path missing and Path.new complete (renamed back).
// Files are 0600, directories the journal creates 0700.
//
// Group commit: Append queues the record under the one lock and, if no writer owns the file,
// becomes the writer. Uncontended (the last batches held a few records at most) it writes the batch
// itself: its own record and any that arrived meanwhile, in one write and at most one fsync, so
// a lone append costs no thread hop, as before; if more was queued meanwhile it hands the file to
// the journal's own thread. Contended (one of the last 16 batches held 4 or more), it hands the file over at once,
// and the thread drains batch after batch until the queue is empty. Every caller waits for its
// own batch only; nobody writes under the lock, and waiters continue asynchronously, never on
// the writer. 30 000 records of a 10 000-panic storm are a few hundred fsyncs.
internal sealed partial class EventJournal : IDisposable
{
    private readonly Lock _lock = new();
    private readonly JournalSettings _settings;
    private readonly TimeProvider _time;
    private readonly Action<Exception?> _writeState;
    private readonly AutoResetEvent _handOff = new(initialState: false);
    private readonly Thread _thread;

    // Guarded by _lock.
    private List<JournalItem> _queue = [];
    private List<JournalItem>? _spare = [];
    private JournalBatch _batch = new();
    private bool _writing;
    private bool _disposed;
    private bool _stop;

    private long _nextId;

    private EventJournal(JournalSettings settings, string run, TimeProvider time, FileStream stream, long length, bool needsNewline, Action<Exception?> writeState)
    {
        _settings = settings;
        _time = time;
        Run = run;
        _stream = stream;
        _length = length;
        _needsNewline = needsNewline;
        _writeState = writeState;
        _thread = new Thread(Drain) { IsBackground = true, Name = "VirtioPanic journal" };
        _thread.Start();
    }

    internal string Path => _settings.Path;

    internal string Run { get; }

    // Commits (writes, each with at most one fsync) so far; a test seam for group commit.
    internal long Commits => Interlocked.Read(ref _commits);

    // Runs on the writer before each batch is written; a test seam that holds the writer so callers queue up.
    internal Action? BeforeWrite { get; set; }

    internal long NextId() => Interlocked.Increment(ref _nextId);

    // Opens (creating if needed), reads what earlier runs left (bounded, see JournalReader), cuts a
    // torn last line, writes the start, torn and recovered records, and returns the report.
    // Throws only when the file cannot be opened or read; a failure to write the start records
    // (disk full) leaves the journal open and is reported through writeState.
    internal static EventJournal Open(JournalSettings settings, string run, TimeProvider time, Action<Exception?> writeState, Action<Exception>? rotationFailed, out JournalRecoveryReport report)
    {
        DateTimeOffset now = time.GetUtcNow();
        string? directory = System.IO.Path.GetDirectoryName(settings.Path);
        if (!string.IsNullOrEmpty(directory))
        {
            JournalFiles.CreateDirectory(directory);
        }

        // A rotation that stopped between its renames left the complete new file beside no active one.
        if (File.Exists(settings.Next))
        {
            if (File.Exists(settings.Path))
            {
                File.Delete(settings.Next);
            }
            else
            {
                File.Move(settings.Next, settings.Path);
            }
        }

        FileStream stream = JournalFiles.Open(settings.Path, FileMode.OpenOrCreate);
        try
        {
            long length = stream.Length;
            long end = JournalReader.CompleteEnd(stream, out bool garbageTail);
            long torn = length - end;
            report = JournalReader.Recover(settings.Path, stream, end, settings.ReadWindow, torn, garbageTail);
            if (torn > 0)
            {
                stream.SetLength(end);
            }

            var journal = new EventJournal(settings, run, time, stream, end, needsNewline: garbageTail, writeState) { RotationFailed = rotationFailed };
            var items = new List<JournalItem> { new(JournalRecords.Start(run, now, Environment.ProcessId), FlushToDisk: true) };
            if (torn > 0)
            {
                items.Add(new(JournalRecords.Torn(run, now, torn), FlushToDisk: true));
            }

            foreach (UnactedJournalEntry entry in report.UnactedEvents)
            {
                items.Add(new(JournalRecords.Recovered(run, now, entry.Run, entry.RecordId), FlushToDisk: true));
            }

            // Each device's latest recoverable decision is carried into this run as a recover
            // record (pending here, so a rotation carries it and a crash before it is resolved
            // finds it again); the earlier ones of the same device are superseded, reported only.
            var latest = new Dictionary<string, UnactedJournalEntry>(StringComparer.Ordinal);
            foreach (UnactedJournalEntry entry in report.UnactedEvents)
            {
                if (entry.Recoverable)
                {
                    latest[entry.DeviceId] = entry;
                }
            }

            var recoveries = new List<(UnactedJournalEntry Entry, long RecoverId)>();
            foreach (UnactedJournalEntry entry in latest.Values)
            {
                long id = journal.NextId();
                items.Add(new(JournalRecords.Recover(run, id, now, entry), FlushToDisk: true, JournalMarks.Opens, id, entry.DeviceId, entry.Sequence));
                recoveries.Add((entry, id));
            }

            // Each device's latest escalation in progress is carried into this run the same way (its
            // new record names and so resolves the old one); an older one of the same device was
            // replaced, and is marked recovered.
            var escalations = new Dictionary<string, JournaledEscalation>(StringComparer.Ordinal);
            foreach (JournaledEscalation escalation in report.PendingEscalations)
            {
                if (escalations.TryGetValue(escalation.DeviceId, out JournaledEscalation? older))
                {
                    items.Add(new(JournalRecords.Recovered(run, now, older.Run, older.RecordId), FlushToDisk: true));
                }

                escalations[escalation.DeviceId] = escalation;
            }

            var carried = new List<(JournaledEscalation Escalation, long CarriedId)>();
            foreach (JournaledEscalation escalation in escalations.Values)
            {
                long id = journal.NextId();
                items.Add(new(JournalRecords.Escalation(run, id, now, escalation, settlesEscalation: 0, escalation.Run, escalation.RecordId), FlushToDisk: true, JournalMarks.Opens, id, escalation.DeviceId, escalation.TriggerSequence));
                carried.Add((escalation, id));
            }

            report = report with { Recoveries = recoveries, Escalations = carried };
            journal.AppendMany(items);
            return journal;
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    // Queues the record and returns once its batch is written (and fsynced if asked): true, or
    // false when it could not be (the failure went to writeState). Completes synchronously when
    // the caller wrote the batch itself.
    internal ValueTask<bool> AppendAsync(JournalItem item)
    {
        JournalBatch? batch = Enqueue(item, out bool writer);
        if (batch is null)
        {
            return ValueTask.FromResult(false);
        }

        if (writer)
        {
            Write();
        }

        return batch.Completion.IsCompleted ? ValueTask.FromResult(batch.Completion.Result) : new ValueTask<bool>(batch.Completion);
    }

    // As AppendAsync, blocking the calling thread until the batch is written. The journal's own
    // thread drains what others queued, so a blocked caller never depends on the thread pool.
    internal bool Append(JournalItem item)
    {
        JournalBatch? batch = Enqueue(item, out bool writer);
        if (batch is null)
        {
            return false;
        }

        if (writer)
        {
            Write();
        }

        return batch.Wait();
    }

    private void AppendMany(List<JournalItem> items)
    {
        JournalBatch? batch = null;
        bool writer = false;
        foreach (JournalItem item in items)
        {
            batch = Enqueue(item, out bool first);
            writer |= first;
        }

        if (writer)
        {
            WriteThenHandOff();
        }

        batch?.Wait();
    }

    private JournalBatch? Enqueue(in JournalItem item, out bool writer)
    {
        Debug.Assert(item.Line.Length > 0 && item.Line[^1] == (byte)'\n', "a journal record is one complete line");
        lock (_lock)
        {
            if (_disposed)
            {
                writer = false;
                return null;
            }

            _queue.Add(item);
            _batch.FlushToDisk |= item.FlushToDisk;
            writer = !_writing;
            _writing = true;
            return _batch;
        }
    }

    // The caller owns the file now. It writes its batch itself when appends come one at a time
    // (the last batches held a few records at most: no thread hop on a lone panic's path); when
    // they come in a crowd (one of the last 16 batches held 4 or more) it hands the file to the journal's thread straight away,
    // so callers on the thread pool do not spend it on writes and fsyncs, and the records that
    // arrive meanwhile make the next batch bigger. Measured on a 10 000-panic storm on tmpfs:
    // p99 write -> action 1.3 s -> 0.3 s (bench/README.md).
    private void Write()
    {
        if (Volatile.Read(ref _crowd) > 0)
        {
            _handOff.Set();
        }
        else
        {
            WriteThenHandOff();
        }
    }

    // The caller became the writer: one batch (its own record's), then the journal's thread takes over if more is queued.
    private void WriteThenHandOff()
    {
        WriteNextBatch();
        lock (_lock)
        {
            if (_queue.Count == 0)
            {
                _writing = false;
                return;
            }
        }

        _handOff.Set();
    }

    // The journal's thread: woken with the file handed to it, drains until nothing is queued.
    private void Drain()
    {
        while (true)
        {
            _handOff.WaitOne();
            lock (_lock)
            {
                if (_stop)
                {
                    return;
                }
            }

            while (true)
            {
                WriteNextBatch();
                lock (_lock)
                {
                    if (_queue.Count == 0)
                    {
                        _writing = false;
                        break;
                    }
                }
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        // Take the file from whoever writes it, then write what was queued before the close.
        SpinWait spin = default;
        while (true)
        {
            lock (_lock)
            {
                if (!_writing)
                {
                    _writing = true;
                    break;
                }
            }

            spin.SpinOnce(sleep1Threshold: 10);
        }

        while (true)
        {
            lock (_lock)
            {
                if (_queue.Count == 0)
                {
                    _stop = true;
                    break;
                }
            }

            WriteNextBatch();
        }

        _handOff.Set();
        _thread.Join();
        _handOff.Dispose();
        try
        {
            _stream.Flush(flushToDisk: true);
        }
        catch (IOException)
        {
            // Everything acknowledged was already written; a last fsync failing changes nothing.
        }
        finally
        {
            _stream.Dispose();
        }
    }

    // One buffer and writer per thread, reused: a panic storm builds three records per panic, and
    // a fresh writer and buffer for each was most of what the storm allocated (and collected).
    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_lineBuffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_lineWriter;

    internal static byte[] Line(Action<Utf8JsonWriter> write)
    {
        ArrayBufferWriter<byte> buffer = t_lineBuffer ??= new ArrayBufferWriter<byte>(512);
        buffer.ResetWrittenCount();
        Utf8JsonWriter writer = t_lineWriter ??= new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        writer.Reset(buffer);
        try
        {
            write(writer);
            writer.Flush();
        }
        catch
        {
            // A writer left mid-object would corrupt the next line built on this thread.
            t_lineWriter = null;
            throw;
        }

        byte[] line = new byte[buffer.WrittenCount + 1];
        buffer.WrittenSpan.CopyTo(line);
        line[^1] = (byte)'\n';
        return line;
    }

    internal static string Text(ReadOnlySpan<byte> line) => Encoding.UTF8.GetString(line.TrimEnd((byte)'\n'));
}
