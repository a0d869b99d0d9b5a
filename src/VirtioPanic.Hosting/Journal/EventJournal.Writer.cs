using System.Buffers;

namespace VirtioPanic.Hosting.Journal;

// The writer's side: only the caller or thread that owns the file (_writing) runs this, never
// under _lock, so it needs no lock of its own for the fields below.
internal sealed partial class EventJournal
{
    private readonly ArrayBufferWriter<byte> _buffer = new(64 * 1024);

    // What is pending in the file: acting decisions by id, accepted events by id and by device.
    private readonly Dictionary<long, byte[]> _pending = [];
    private readonly Dictionary<string, List<(long Sequence, long Id)>> _accepted = new(StringComparer.Ordinal);

    private FileStream _stream;
    private long _length;

    // Bytes at the head of the active file that its rotation carried; rotating again before
    // anything follows them would only copy them once more.
    private long _headerLength;
    private long _rotateRetryAt;
    private bool _needsNewline;
    private bool _failing;
    private long _commits;

    // How many more batches count as contended: set by a batch of CrowdRecords or more, counted
    // down by smaller ones (hysteresis, so a storm does not flip back to callers writing at its
    // first lull); read by callers deciding whether to write themselves. Two or three records
    // together are ordinary (one panic's outcome overlapping the next panic's acceptance), not a crowd.
    private const int CrowdBatches = 16;
    private const int CrowdRecords = 4;
    private int _crowd;

    // Reports a failed rotation (the journal keeps writing the file it has and retries later).
    internal Action<Exception>? RotationFailed { get; set; }

    private void WriteNextBatch()
    {
        List<JournalItem> items;
        JournalBatch batch;
        lock (_lock)
        {
            items = _queue;
            _queue = _spare ?? [];
            _spare = null;
            batch = _batch;
            _batch = new JournalBatch();
        }

        BeforeWrite?.Invoke();
        Exception? error = null;
        try
        {
            Commit(items, batch.FlushToDisk);
        }
        catch (Exception ex)
        {
            // Whatever went wrong, the batch completes (as not written) and the file is released:
            // a journal failure must never leave a caller, or the service, waiting.
            error = ex;
            Truncate();
        }

        Volatile.Write(ref _crowd, items.Count >= CrowdRecords ? CrowdBatches : Math.Max(_crowd - 1, 0));
        items.Clear();
        lock (_lock)
        {
            _spare = items;
        }

        batch.Complete(error is null);
        if (error is not null || _failing)
        {
            // Only changes are reported: the first failure, and the first success after failures.
            _failing = error is not null;
            _writeState(error);
        }
    }

    private void Commit(List<JournalItem> items, bool flushToDisk)
    {
        _buffer.ResetWrittenCount();
        if (_needsNewline)
        {
            // What follows a torn or failed write starts on a line of its own.
            _buffer.Write("\n"u8);
        }

        int applied = 0;
        for (int i = 0; i < items.Count; i++)
        {
            long size = _length + _buffer.WrittenCount;
            if (RotationDue(size, items[i].Line.Length))
            {
                WriteBuffer();
                Apply(items, applied, i);
                applied = i;
                TryRotate();
            }

            _buffer.Write(items[i].Line);
        }

        WriteBuffer();
        if (flushToDisk)
        {
            _stream.Flush(flushToDisk: true);
        }

        Interlocked.Increment(ref _commits);
        Apply(items, applied, items.Count);
    }

    // Whether the record about to be written (line bytes) should go into a new file. Rotating
    // copies every pending record (the header) into the next file; when the pending records are a
    // large share of MaxFileSize (a backlog of accepted events the service has not decided yet, in a
    // storm on a loaded host), rotating at the limit would copy them again after a few new records:
    // every append a rotation, each one header's worth of writes and an fsync, and the oldest
    // files rotated away within a second. So a file past the limit is rotated only once it holds at
    // least as many new bytes as it carries (a rotation never copies more than was written since the
    // last one), and at MaxFileSize + RotationSlack at the latest, which keeps every file the journal
    // writes within the window start-up reads (JournalSettings.ReadWindow).
    private bool RotationDue(long size, int line)
    {
        if (size + line <= _settings.MaxFileSize || size <= _headerLength || size < _rotateRetryAt)
        {
            return false;
        }

        return size - _headerLength >= _headerLength || size + line > _settings.MaxFileSize + RotationSlack;
    }

    // Half of what start-up reads beyond MaxFileSize (JournalReader.MaxRecordBytes): room for the
    // record that crosses it.
    internal const long RotationSlack = JournalReader.MaxRecordBytes / 2;

    private void WriteBuffer()
    {
        if (_buffer.WrittenCount == 0)
        {
            return;
        }

        RandomAccess.Write(_stream.SafeFileHandle, _buffer.WrittenSpan, _length);
        _length += _buffer.WrittenCount;
        _needsNewline = false;
        _buffer.ResetWrittenCount();
    }

    // After a failed write (disk full): cut whatever part of it reached the file, so the next
    // record is not glued to a fragment; if even that fails, the next write starts a new line.
    private void Truncate()
    {
        _buffer.ResetWrittenCount();
        try
        {
            _stream.SetLength(_length);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            try
            {
                _length = Math.Max(_length, _stream.Length);
            }
            catch (Exception inner) when (inner is IOException or ObjectDisposedException)
            {
                // Keep the length known; the next write starts a new line either way.
            }

            _needsNewline = true;
        }
    }

    private void Apply(List<JournalItem> items, int from, int to)
    {
        for (int i = from; i < to; i++)
        {
            JournalItem item = items[i];
            if ((item.Marks & JournalMarks.Accepts) != 0 && item.DeviceId is not null)
            {
                _pending[item.Id] = item.Line;
                if (!_accepted.TryGetValue(item.DeviceId, out List<(long Sequence, long Id)>? list))
                {
                    list = [];
                    _accepted[item.DeviceId] = list;
                }

                list.Add((item.Sequence, item.Id));
            }

            if ((item.Marks & JournalMarks.Decides) != 0 && item.DeviceId is not null && _accepted.TryGetValue(item.DeviceId, out List<(long Sequence, long Id)>? waiting))
            {
                for (int j = waiting.Count - 1; j >= 0; j--)
                {
                    if (waiting[j].Sequence <= item.Sequence)
                    {
                        _pending.Remove(waiting[j].Id);
                        waiting.RemoveAt(j);
                    }
                }

                if (waiting.Count == 0)
                {
                    _accepted.Remove(item.DeviceId);
                }
            }

            if ((item.Marks & JournalMarks.Opens) != 0)
            {
                _pending[item.Id] = item.Line;
            }

            if ((item.Marks & JournalMarks.Closes) != 0)
            {
                _pending.Remove(item.Id);
            }

            if (item.Settles != 0)
            {
                _pending.Remove(item.Settles);
            }

            if (item.SettlesEscalation != 0)
            {
                _pending.Remove(item.SettlesEscalation);
            }
        }
    }

    private void TryRotate()
    {
        try
        {
            Rotate();
        }
        catch (Exception ex)
        {
            // Keep the current file (a failed rotation loses nothing); try again once it grew by another eighth of the limit.
            _rotateRetryAt = _length + Math.Max(_settings.MaxFileSize / 8, 1);
            RotationFailed?.Invoke(ex);
        }
    }

    private void Rotate()
    {
        // The old file is complete on disk before it is renamed away.
        _stream.Flush(flushToDisk: true);
        long[] ids = [.. _pending.Keys];
        Array.Sort(ids);
        var header = new ArrayBufferWriter<byte>(4096);
        header.Write(JournalRecords.Rotated(Run, _time.GetUtcNow(), ids.Length));
        foreach (long id in ids)
        {
            header.Write(_pending[id]);
        }

        FileStream next = JournalFiles.Open(_settings.Next, FileMode.Create);
        try
        {
            RandomAccess.Write(next.SafeFileHandle, header.WrittenSpan, 0);
            next.Flush(flushToDisk: true);
            string oldest = _settings.Rotated(_settings.MaxFiles);
            if (File.Exists(oldest))
            {
                File.Delete(oldest);
            }

            for (int k = _settings.MaxFiles - 1; k >= 1; k--)
            {
                if (File.Exists(_settings.Rotated(k)))
                {
                    File.Move(_settings.Rotated(k), _settings.Rotated(k + 1));
                }
            }

            File.Move(_settings.Path, _settings.Rotated(1));
            try
            {
                File.Move(_settings.Next, _settings.Path);
            }
            catch
            {
                // Put the old file back: it still holds everything.
                File.Move(_settings.Rotated(1), _settings.Path);
                throw;
            }
        }
        catch
        {
            next.Dispose();
            try
            {
                File.Delete(_settings.Next);
            }
            catch (IOException)
            {
                // Start-up deletes it (the active file exists).
            }

            throw;
        }

        _stream.Dispose();
        _stream = next;
        _length = header.WrittenCount;
        _headerLength = _length;
        _rotateRetryAt = 0;
    }
}
