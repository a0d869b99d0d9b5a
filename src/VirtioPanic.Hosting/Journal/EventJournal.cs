using System.Buffers;
using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace VirtioPanic.Hosting.Journal;

// Design: the durable event journal, one JSON object per line (UTF-8, LF).
//
// Records (every one has "type", "run" = the service start that wrote it, "time"):
//   start      {"type":"start","run","time","pid"}
//   event      {"type":"event","run","id","time","device","seq","name","action","acting","note"?,"qmp":{...}}
//   deadline   {"type":"deadline"|"continue"|"guest-reset", same members as event, "qmp" null}
//   outcome    {"type":"outcome","run","id","time","result","steps":[{"op","ok","error"?,"fallback-for"?,"ms","path"?}]}
//   recovered  {"type":"recovered","run","time","of-run","of-id"}: an unacted record was reported
//   torn       {"type":"torn","run","time","bytes"}: a torn last line was cut off at start
// A record with "acting": true expects an outcome record with the same (run, id). At start,
// acting records with neither an outcome nor a recovered record are the events that were journaled
// but never acted on; they are reported once and then marked recovered.
//
// Durability: the file is opened unbuffered, so every Append reaches the operating system before
// it returns (a killed process loses nothing); flushToDisk adds an fsync. Appends are serialized by
// one lock, held for the write and the fsync only.
internal sealed class EventJournal : IDisposable
{
    private readonly Lock _lock = new();
    private readonly FileStream _stream;
    private long _nextId;
    private bool _disposed;

    private EventJournal(string path, string run, FileStream stream)
    {
        Path = path;
        Run = run;
        _stream = stream;
    }

    internal string Path { get; }

    internal string Run { get; }

    internal long NextId() => Interlocked.Increment(ref _nextId);

    // Opens (creating if needed), reads what earlier runs left, cuts a torn last line, writes the
    // start, torn and recovered records, and returns the report.
    internal static EventJournal Open(string path, string run, DateTimeOffset now, out JournalRecoveryReport report)
    {
        string full = System.IO.Path.GetFullPath(path);
        string? directory = System.IO.Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        var stream = new FileStream(full, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, bufferSize: 0, FileOptions.None);
        try
        {
            byte[] content = new byte[stream.Length];
            stream.ReadExactly(content);
            int end = content.AsSpan().LastIndexOf((byte)'\n') + 1;
            long torn = content.Length - end;
            if (torn > 0)
            {
                stream.SetLength(end);
            }

            stream.Position = end;
            report = JournalReader.Recover(full, content.AsMemory(0, end), torn);
            var journal = new EventJournal(full, run, stream);
            journal.Append(JournalRecords.Start(run, now, Environment.ProcessId), flushToDisk: false);
            if (torn > 0)
            {
                journal.Append(JournalRecords.Torn(run, now, torn), flushToDisk: false);
            }

            foreach (UnactedJournalEntry entry in report.UnactedEvents)
            {
                journal.Append(JournalRecords.Recovered(run, now, entry.Run, entry.RecordId), flushToDisk: false);
            }

            journal.Flush();
            return journal;
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    internal void Append(ReadOnlySpan<byte> line, bool flushToDisk)
    {
        Debug.Assert(line.Length > 0 && line[^1] == (byte)'\n', "a journal record is one complete line");
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _stream.Write(line);
            if (flushToDisk)
            {
                _stream.Flush(flushToDisk: true);
            }
        }
    }

    internal void Flush()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _stream.Flush(flushToDisk: true);
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
            try
            {
                _stream.Flush(flushToDisk: true);
            }
            finally
            {
                _stream.Dispose();
            }
        }
    }

    internal static byte[] Line(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            write(writer);
        }

        byte[] line = new byte[buffer.WrittenCount + 1];
        buffer.WrittenSpan.CopyTo(line);
        line[^1] = (byte)'\n';
        return line;
    }

    internal static string Text(ReadOnlySpan<byte> line) => Encoding.UTF8.GetString(line.TrimEnd((byte)'\n'));
}
