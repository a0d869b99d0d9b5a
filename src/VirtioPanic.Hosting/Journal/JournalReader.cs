using System.Text;
using System.Text.Json;

namespace VirtioPanic.Hosting.Journal;

// Reads the complete lines of a journal at start and finds the acting records without an outcome.
internal static class JournalReader
{
    internal static JournalRecoveryReport Recover(string path, ReadOnlyMemory<byte> content, long tornBytes)
    {
        var pending = new Dictionary<(string Run, long Id), UnactedJournalEntry>();
        var order = new List<(string Run, long Id)>();
        int records = 0;
        int corrupt = 0;
        ReadOnlySpan<byte> rest = content.Span;
        while (!rest.IsEmpty)
        {
            int newline = rest.IndexOf((byte)'\n');
            ReadOnlySpan<byte> line = newline < 0 ? rest : rest[..newline];
            rest = newline < 0 ? [] : rest[(newline + 1)..];
            if (line.IsEmpty)
            {
                continue;
            }

            if (!TryRead(line, pending, order))
            {
                corrupt++;
                continue;
            }

            records++;
        }

        var unacted = new List<UnactedJournalEntry>();
        foreach ((string Run, long Id) key in order)
        {
            if (pending.TryGetValue(key, out UnactedJournalEntry? entry))
            {
                unacted.Add(entry);
            }
        }

        return new JournalRecoveryReport
        {
            Path = path,
            UnactedEvents = unacted,
            TornTrailingBytes = tornBytes,
            CorruptLines = corrupt,
            Records = records,
        };
    }

    private static bool TryRead(ReadOnlySpan<byte> line, Dictionary<(string Run, long Id), UnactedJournalEntry> pending, List<(string Run, long Id)> order)
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
            switch (type.GetString())
            {
                case "outcome":
                    pending.Remove((runId, root.GetProperty("id").GetInt64()));
                    break;
                case "recovered":
                    pending.Remove((root.GetProperty("of-run").GetString() ?? string.Empty, root.GetProperty("of-id").GetInt64()));
                    break;
                case "event" or "deadline" or "continue" or "guest-reset" when root.GetProperty("acting").GetBoolean():
                    var key = (runId, root.GetProperty("id").GetInt64());
                    pending[key] = new UnactedJournalEntry
                    {
                        Run = runId,
                        RecordId = key.Item2,
                        DeviceId = root.GetProperty("device").GetString() ?? string.Empty,
                        Sequence = root.GetProperty("seq").GetInt64(),
                        Name = root.GetProperty("name").GetString() ?? string.Empty,
                        PolicyAction = root.GetProperty("action").GetString() ?? string.Empty,
                        Time = root.GetProperty("time").GetDateTimeOffset(),
                        Line = Encoding.UTF8.GetString(line),
                    };
                    order.Add(key);
                    break;
            }

            return true;
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return false;
        }
    }
}
