using System.Text.Json;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting.Journal;

// Builders of the journal's records (layout in EventJournal).
internal static class JournalRecords
{
    internal static byte[] Start(string run, DateTimeOffset now, int pid) => EventJournal.Line(w =>
    {
        Header(w, "start", run, now);
        w.WriteNumber("pid", pid);
        w.WriteEndObject();
    });

    internal static byte[] Torn(string run, DateTimeOffset now, long bytes) => EventJournal.Line(w =>
    {
        Header(w, "torn", run, now);
        w.WriteNumber("bytes", bytes);
        w.WriteEndObject();
    });

    internal static byte[] Recovered(string run, DateTimeOffset now, string ofRun, long ofId) => EventJournal.Line(w =>
    {
        Header(w, "recovered", run, now);
        w.WriteString("of-run", ofRun);
        w.WriteNumber("of-id", ofId);
        w.WriteEndObject();
    });

    internal static byte[] Rotated(string run, DateTimeOffset now, int carried) => EventJournal.Line(w =>
    {
        Header(w, "rotated", run, now);
        w.WriteNumber("carried", carried);
        w.WriteEndObject();
    });

    // A guest report the device accepted, journaled before the guest learns it was accepted.
    internal static byte[] Accepted(string run, long id, DateTimeOffset now, string deviceId, long sequence, string name) => EventJournal.Line(w =>
    {
        Header(w, "accepted", run, now);
        w.WriteNumber("id", id);
        w.WriteString("device", deviceId);
        w.WriteNumber("seq", sequence);
        w.WriteString("name", name);
        w.WriteEndObject();
    });

    // An event, deadline, escalation step or management request and the decision taken on it;
    // extra writes further members (the escalation's, see PolicyService.Escalation.cs) before "qmp".
    internal static byte[] Decision(string type, string run, long id, DateTimeOffset now, string deviceId, long sequence, string name, string action, bool acting, string? note, WatchdogEvent? evt, Action<Utf8JsonWriter>? extra = null) => EventJournal.Line(w =>
    {
        Header(w, type, run, now);
        w.WriteNumber("id", id);
        w.WriteString("device", deviceId);
        w.WriteNumber("seq", sequence);
        w.WriteString("name", name);
        w.WriteString("action", action);
        w.WriteBoolean("acting", acting);
        if (note is not null)
        {
            w.WriteString("note", note);
        }

        extra?.Invoke(w);
        if (evt is not null)
        {
            w.WritePropertyName("qmp");
            QmpEvents.Write(w, evt, action);
        }

        w.WriteEndObject();
    });

    internal static byte[] Outcome(string run, long id, DateTimeOffset now, string result, IReadOnlyList<ActionOutcome> steps) => EventJournal.Line(w =>
    {
        Header(w, "outcome", run, now);
        w.WriteNumber("id", id);
        w.WriteString("result", result);
        w.WriteStartArray("steps");
        foreach (ActionOutcome step in steps)
        {
            w.WriteStartObject();
            w.WriteString("op", PolicyNames.Of(step.Operation));
            w.WriteBoolean("ok", step.Succeeded);
            if (step.Error is not null)
            {
                w.WriteString("error", step.Error);
            }

            if (step.FallbackFor is VmOperation failed)
            {
                w.WriteString("fallback-for", PolicyNames.Of(failed));
            }

            w.WriteNumber("ms", Math.Round(step.Duration.TotalMilliseconds, 3));
            if (step.Path is not null)
            {
                w.WriteString("path", step.Path);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    });

    private static void Header(Utf8JsonWriter w, string type, string run, DateTimeOffset now)
    {
        w.WriteStartObject();
        w.WriteString("type", type);
        w.WriteString("run", run);
        w.WriteString("time", now);
    }
}
