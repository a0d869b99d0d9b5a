using System.Buffers;
using System.Text;
using System.Text.Json;

namespace VirtioPanic.Hosting.Journal;

// Reads what start-up needs from the active journal file: its complete lines within the last
// ReadWindow bytes, in fixed-size chunks, so time and memory are bounded by the window whatever
// the file's size (a 2 GiB file from an older version reads no more than a fresh one). Rotation
// carries every record still pending into the head of the next file (EventJournal), so for a file
// the journal wrote the window is the whole file; of an oversized one, only its tail is read and
// the skipped prefix is reported.
internal static class JournalReader
{
    // No record the journal writes comes near this (the largest, an event with a kernel-log tail, is a few KiB).
    internal const int MaxRecordBytes = 1 << 20;

    private const int ChunkBytes = 64 * 1024;

    // A vCPU-stall escalation's vCPU set read from the journal is bounded (the device has at most a few hundred).
    private const int MaxVcpus = 4096;

    // An escalation record's plan and next action are bounded too (EscalationText.MaxSteps steps are a few hundred characters).
    private const int MaxPlanChars = 1024;

    // Where the complete lines end: just past the last '\n' within the last MaxRecordBytes. When
    // there is none there, the tail is longer than any record: not a torn record but garbage, left
    // in place (the next write starts on a new line) and read as one corrupt line.
    internal static long CompleteEnd(FileStream stream, out bool garbageTail)
    {
        long length = stream.Length;
        long scanned = 0;
        byte[] chunk = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            while (scanned < length && scanned < MaxRecordBytes)
            {
                int count = (int)Math.Min(ChunkBytes, length - scanned);
                long offset = length - scanned - count;
                RandomAccess.Read(stream.SafeFileHandle, chunk.AsSpan(0, count), offset);
                int newline = chunk.AsSpan(0, count).LastIndexOf((byte)'\n');
                if (newline >= 0)
                {
                    garbageTail = false;
                    return offset + newline + 1;
                }

                scanned += count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }

        garbageTail = length > 0 && scanned >= MaxRecordBytes;
        return garbageTail ? length : 0;
    }

    internal static JournalRecoveryReport Recover(string path, FileStream stream, long end, long window, long tornBytes, bool garbageTail)
    {
        var state = new RecoveryState();
        long start = Math.Max(0, end - window);
        bool skipping = start > 0;
        long skipped = start;
        int corrupt = 0;
        int records = 0;
        byte[] chunk = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        var line = new ArrayBufferWriter<byte>(4096);
        bool overlong = false;
        try
        {
            for (long offset = start; offset < end;)
            {
                int count = RandomAccess.Read(stream.SafeFileHandle, chunk.AsSpan(0, (int)Math.Min(ChunkBytes, end - offset)), offset);
                if (count <= 0)
                {
                    break;
                }

                offset += count;
                ReadOnlySpan<byte> rest = chunk.AsSpan(0, count);
                while (!rest.IsEmpty)
                {
                    int newline = rest.IndexOf((byte)'\n');
                    ReadOnlySpan<byte> part = newline < 0 ? rest : rest[..newline];
                    rest = newline < 0 ? [] : rest[(newline + 1)..];
                    if (skipping)
                    {
                        // The window starts inside a line: that line belongs to the skipped prefix.
                        skipped += part.Length + (newline < 0 ? 0 : 1);
                        skipping = newline < 0;
                        continue;
                    }

                    if (!overlong && line.WrittenCount + part.Length <= MaxRecordBytes)
                    {
                        line.Write(part);
                    }
                    else
                    {
                        overlong = true;
                    }

                    if (newline < 0)
                    {
                        continue;
                    }

                    if (overlong)
                    {
                        corrupt++;
                    }
                    else if (line.WrittenCount > 0)
                    {
                        if (state.TryRead(line.WrittenSpan))
                        {
                            records++;
                        }
                        else
                        {
                            corrupt++;
                        }
                    }

                    overlong = false;
                    line.ResetWrittenCount();
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }

        if (garbageTail || line.WrittenCount > 0 || overlong)
        {
            corrupt++;
        }

        return new JournalRecoveryReport
        {
            Path = path,
            UnactedEvents = state.Unacted(),
            PendingEscalations = state.Escalations(),
            TornTrailingBytes = tornBytes,
            CorruptLines = corrupt,
            Records = records,
            SkippedBytes = skipped,
        };
    }

    // The records seen so far and which of them are still pending.
    private sealed class RecoveryState
    {
        private readonly Dictionary<(string Run, long Id), UnactedJournalEntry> _pending = [];
        private readonly List<(string Run, long Id)> _order = [];
        private readonly Dictionary<(string Run, string Device), List<(long Sequence, long Id)>> _accepted = [];

        // "escalation" records not yet settled, in the order read.
        private readonly Dictionary<(string Run, long Id), JournaledEscalation> _escalations = [];
        private readonly List<(string Run, long Id)> _escalationOrder = [];

        internal List<JournaledEscalation> Escalations()
        {
            var pending = new List<JournaledEscalation>();
            foreach ((string Run, long Id) key in _escalationOrder)
            {
                if (_escalations.Remove(key, out JournaledEscalation? escalation))
                {
                    pending.Add(escalation);
                }
            }

            return pending;
        }

        internal List<UnactedJournalEntry> Unacted()
        {
            var unacted = new List<UnactedJournalEntry>();
            foreach ((string Run, long Id) key in _order)
            {
                // A key can be listed twice (a record carried into a new file is the same record); report it once.
                if (_pending.Remove(key, out UnactedJournalEntry? entry))
                {
                    unacted.Add(entry);
                }
            }

            return unacted;
        }

        internal bool TryRead(ReadOnlySpan<byte> line)
        {
            try
            {
                var reader = new Utf8JsonReader(line);
                using JsonDocument document = JsonDocument.ParseValue(ref reader);
                JsonElement root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("type", out JsonElement type) || !root.TryGetProperty("run", out JsonElement run))
                {
                    return false;
                }

                string runId = run.GetString() ?? string.Empty;
                if (root.TryGetProperty("settles", out JsonElement settles))
                {
                    // A deadline that fired or was cancelled resolves the decision that armed it.
                    _pending.Remove((runId, settles.GetInt64()));
                }

                if (root.TryGetProperty("settles-escalation", out JsonElement settlesEscalation))
                {
                    // A later step, a cancellation or a replacement resolves the escalation it advanced or ended.
                    _escalations.Remove((runId, settlesEscalation.GetInt64()));
                }

                switch (type.GetString())
                {
                    case "outcome":
                        _pending.Remove((runId, root.GetProperty("id").GetInt64()));
                        _escalations.Remove((runId, root.GetProperty("id").GetInt64()));
                        break;
                    case "escalation":
                        JournaledEscalation escalation = Escalation(root, runId);
                        if (root.TryGetProperty("of-run", out JsonElement ofRun))
                        {
                            // Carried into a later run: that run's record replaces the earlier one.
                            _escalations.Remove((ofRun.GetString() ?? string.Empty, root.GetProperty("of-id").GetInt64()));
                        }

                        _escalations[(runId, escalation.RecordId)] = escalation;
                        _escalationOrder.Add((runId, escalation.RecordId));
                        break;
                    case "attempt":
                        // A VM-control call started: from now on the decision may have been carried out.
                        var attempted = (runId, root.GetProperty("of-id").GetInt64());
                        if (_pending.TryGetValue(attempted, out UnactedJournalEntry? open))
                        {
                            _pending[attempted] = open with { Attempted = true };
                        }

                        break;
                    case "recover":
                        Add(Entry(root, runId, line, root.GetProperty("action").GetString() ?? string.Empty) with { RecordType = root.GetProperty("of-type").GetString() ?? "event" });
                        break;
                    case "recovered":
                        _pending.Remove((root.GetProperty("of-run").GetString() ?? string.Empty, root.GetProperty("of-id").GetInt64()));
                        _escalations.Remove((root.GetProperty("of-run").GetString() ?? string.Empty, root.GetProperty("of-id").GetInt64()));
                        break;
                    case "accepted":
                        UnactedJournalEntry accepted = Entry(root, runId, line, action: string.Empty);
                        Add(accepted);
                        if (!_accepted.TryGetValue((runId, accepted.DeviceId), out List<(long Sequence, long Id)>? list))
                        {
                            list = [];
                            _accepted[(runId, accepted.DeviceId)] = list;
                        }

                        list.Add((accepted.Sequence, accepted.RecordId));
                        break;
                    case "event" or "deadline" or "continue" or "guest-reset" or "step":
                        string device = root.GetProperty("device").GetString() ?? string.Empty;
                        long sequence = root.GetProperty("seq").GetInt64();
                        if (_accepted.TryGetValue((runId, device), out List<(long Sequence, long Id)>? waiting))
                        {
                            // Events are decided in order per device; one the device folded into a
                            // later one (coalesced) is decided with it.
                            for (int i = waiting.Count - 1; i >= 0; i--)
                            {
                                if (waiting[i].Sequence <= sequence)
                                {
                                    _pending.Remove((runId, waiting[i].Id));
                                    waiting.RemoveAt(i);
                                }
                            }
                        }

                        if (root.GetProperty("acting").GetBoolean())
                        {
                            Add(Entry(root, runId, line, root.GetProperty("action").GetString() ?? string.Empty) with { RecordType = type.GetString()! });
                        }
                        else if (root.TryGetProperty("defer", out JsonElement defer))
                        {
                            // A grace window or crash-kernel deadline: the action is due later.
                            Add(Entry(root, runId, line, defer.GetProperty("action").GetString() ?? string.Empty) with { RecordType = type.GetString()! });
                        }

                        break;
                }

                return true;
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                return false;
            }
        }

        private void Add(UnactedJournalEntry entry)
        {
            _pending[(entry.Run, entry.RecordId)] = entry;
            _order.Add((entry.Run, entry.RecordId));
        }

        private static UnactedJournalEntry Entry(JsonElement root, string run, ReadOnlySpan<byte> line, string action)
        {
            bool? running = root.TryGetProperty("vm", out JsonElement vm) && vm.ValueKind == JsonValueKind.Object && vm.TryGetProperty("running", out JsonElement r) && r.ValueKind is JsonValueKind.True or JsonValueKind.False
                ? r.GetBoolean()
                : null;
            DateTimeOffset? due = null;
            PendingDeadlineKind kind = default;
            if (root.TryGetProperty("defer", out JsonElement defer) && defer.ValueKind == JsonValueKind.Object)
            {
                due = defer.GetProperty("due").GetDateTimeOffset();
                if (!PolicyNames.TryParse(defer.GetProperty("kind").GetString(), out kind))
                {
                    throw new FormatException("unknown deadline kind");
                }
            }

            return Base(root, run, line, action) with { VmRunning = running, DeferredUntil = due, DeferredKind = kind, EscalationStep = EscalationMember(root) };
        }

        // A decision's "escalation" member (PolicyService.Escalation.cs), with the bounds of an
        // escalation record; null when there is none or it is malformed (ignored, not a corrupt line).
        private static JournaledEscalation? EscalationMember(JsonElement root)
        {
            if (!root.TryGetProperty("escalation", out JsonElement mark) || mark.ValueKind != JsonValueKind.Object)
            {
                return null;
            }

            try
            {
                if (!PolicyNames.TryParse(mark.GetProperty("kind").GetString(), out EscalationKind kind))
                {
                    return null;
                }

                return new JournaledEscalation
                {
                    Run = string.Empty,
                    RecordId = 0,
                    DeviceId = string.Empty,
                    Kind = kind,
                    Plan = Bounded(mark.GetProperty("plan").GetString()),
                    TriggerSequence = mark.GetProperty("trigger-seq").GetInt64(),
                    Step = mark.GetProperty("step").GetInt32(),
                    StepCount = mark.GetProperty("of").GetInt32(),
                    NextAction = mark.TryGetProperty("next", out JsonElement next) ? Bounded(next.GetString()) : string.Empty,
                    Due = DateTimeOffset.MaxValue,
                    Vcpus = Vcpus(mark),
                    Time = default,
                };
            }
            catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException)
            {
                return null;
            }
        }

        // A plan or next action: no plan of at most EscalationText.MaxSteps steps comes near
        // MaxPlanChars; a longer one would only flood the log lines that name it.
        private static string Bounded(string? text) =>
            (text ?? string.Empty).Length <= MaxPlanChars ? text ?? string.Empty : throw new FormatException("plan too long");

        private static System.Collections.Immutable.ImmutableArray<uint> Vcpus(JsonElement element)
        {
            var vcpus = System.Collections.Immutable.ImmutableArray.CreateBuilder<uint>();
            if (element.TryGetProperty("vcpus", out JsonElement list))
            {
                if (list.GetArrayLength() > MaxVcpus)
                {
                    throw new FormatException("too many vCPUs");
                }

                foreach (JsonElement vcpu in list.EnumerateArray())
                {
                    vcpus.Add(vcpu.GetUInt32());
                }
            }

            return vcpus.ToImmutable();
        }

        // Only the shape is checked here (types, bounds); whether the plan and step make sense is
        // PolicyEngine.Resume's question, answered when the device is attached.
        private static JournaledEscalation Escalation(JsonElement root, string run)
        {
            if (!PolicyNames.TryParse(root.GetProperty("kind").GetString(), out EscalationKind kind))
            {
                throw new FormatException("unknown escalation kind");
            }

            bool? running = root.TryGetProperty("vm", out JsonElement vm) && vm.ValueKind == JsonValueKind.Object && vm.TryGetProperty("running", out JsonElement r) && r.ValueKind is JsonValueKind.True or JsonValueKind.False
                ? r.GetBoolean()
                : null;
            string plan = Bounded(root.GetProperty("plan").GetString());
            string next = Bounded(root.GetProperty("next").GetString());
            return new JournaledEscalation
            {
                Run = run,
                RecordId = root.GetProperty("id").GetInt64(),
                DeviceId = root.GetProperty("device").GetString() ?? string.Empty,
                Kind = kind,
                Plan = plan,
                TriggerSequence = root.GetProperty("seq").GetInt64(),
                Step = root.GetProperty("step").GetInt32(),
                StepCount = root.GetProperty("of").GetInt32(),
                NextAction = next,
                Due = root.GetProperty("due").GetDateTimeOffset(),
                Vcpus = Vcpus(root),
                VmRunning = running,
                Time = root.GetProperty("time").GetDateTimeOffset(),
            };
        }

        private static UnactedJournalEntry Base(JsonElement root, string run, ReadOnlySpan<byte> line, string action) => new()
        {
            Run = run,
            RecordId = root.GetProperty("id").GetInt64(),
            DeviceId = root.GetProperty("device").GetString() ?? string.Empty,
            Sequence = root.GetProperty("seq").GetInt64(),
            Name = root.GetProperty("name").GetString() ?? string.Empty,
            PolicyAction = action,
            Time = root.GetProperty("time").GetDateTimeOffset(),
            Line = Encoding.UTF8.GetString(line),
        };
    }
}
