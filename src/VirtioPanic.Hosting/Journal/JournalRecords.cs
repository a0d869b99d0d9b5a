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
    internal static byte[] Decision(string type, string run, long id, DateTimeOffset now, string deviceId, long sequence, string name, string action, bool acting, string? note, WatchdogEvent? evt, DecisionFacts facts = default, Action<Utf8JsonWriter>? extra = null) => EventJournal.Line(w =>
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

        WriteFacts(w, facts);
        extra?.Invoke(w);
        if (evt is not null)
        {
            w.WritePropertyName("qmp");
            QmpEvents.Write(w, evt, action);
        }

        w.WriteEndObject();
    });

    // Before the first VM-control call of an acting decision: from here on a restart reports the
    // decision instead of carrying it out, since the call may have been made. Not fsynced: it
    // guards against a crash of this process, which leaves the VMM running.
    internal static byte[] Attempt(string run, DateTimeOffset now, long ofId, string operation) => EventJournal.Line(w =>
    {
        Header(w, "attempt", run, now);
        w.WriteNumber("of-id", ofId);
        w.WriteString("op", operation);
        w.WriteEndObject();
    });

    // An earlier run's decision, decided but not attempted, carried into this run at start: acting,
    // pending until this run carries it out (attempt, outcome) or reports it (an outcome with
    // result "not-acted"). "of-type" is the type of the original record.
    internal static byte[] Recover(string run, long id, DateTimeOffset now, UnactedJournalEntry entry) => EventJournal.Line(w =>
    {
        Header(w, "recover", run, now);
        w.WriteNumber("id", id);
        w.WriteString("device", entry.DeviceId);
        w.WriteNumber("seq", entry.Sequence);
        w.WriteString("name", entry.Name);
        w.WriteString("action", entry.PolicyAction);
        w.WriteBoolean("acting", true);
        w.WriteString("of-type", entry.RecordType);
        w.WriteString("of-run", entry.Run);
        w.WriteNumber("of-id", entry.RecordId);
        PendingDeadline? deferred = entry.DeferredUntil is DateTimeOffset due ? new PendingDeadline(entry.DeferredKind, due, entry.Sequence) : null;
        WriteFacts(w, new DecisionFacts(entry.VmRunning, deferred, deferred is null ? null : entry.PolicyAction, 0));

        // A step of an escalation keeps its "escalation" member: carried out, the escalation goes on from it.
        using (JsonDocument original = JsonDocument.Parse(entry.Line))
        {
            if (original.RootElement.TryGetProperty("escalation", out JsonElement escalation) && escalation.ValueKind == JsonValueKind.Object)
            {
                w.WritePropertyName("escalation");
                escalation.WriteTo(w);
            }
        }

        w.WriteEndObject();
    });

    private static void WriteFacts(Utf8JsonWriter w, DecisionFacts facts)
    {
        if (facts.VmRunning is bool running)
        {
            w.WriteStartObject("vm");
            w.WriteBoolean("running", running);
            w.WriteEndObject();
        }

        if (facts.Deferred is { } deferred)
        {
            w.WriteStartObject("defer");
            w.WriteString("kind", PolicyNames.Of(deferred.Kind));
            w.WriteString("due", deferred.Due);
            w.WriteString("action", facts.DeferredAction ?? string.Empty);
            w.WriteEndObject();
        }

        if (facts.Settles != 0)
        {
            w.WriteNumber("settles", facts.Settles);
        }

        if (facts.SettlesEscalation != 0)
        {
            w.WriteNumber("settles-escalation", facts.SettlesEscalation);
        }
    }

    // A device's escalation in progress after a step (or carried into this run from an earlier
    // one: ofRun/ofId, which it resolves): pending until the next step's decision, a cancellation,
    // a replacement or the last step settles it ("settles-escalation"), or an outcome reports it.
    internal static byte[] Escalation(string run, long id, DateTimeOffset now, JournaledEscalation e, long settlesEscalation, string? ofRun = null, long ofId = 0) => EventJournal.Line(w =>
    {
        Header(w, "escalation", run, now);
        w.WriteNumber("id", id);
        w.WriteString("device", e.DeviceId);
        w.WriteNumber("seq", e.TriggerSequence);
        w.WriteString("kind", Policy.PolicyEngine.KindName(e.Kind));
        w.WriteString("plan", e.Plan);
        w.WriteNumber("step", e.Step);
        w.WriteNumber("of", e.StepCount);
        w.WriteString("next", e.NextAction);
        w.WriteString("due", e.Due);
        if (!e.Vcpus.IsEmpty)
        {
            w.WriteStartArray("vcpus");
            foreach (uint vcpu in e.Vcpus)
            {
                w.WriteNumberValue(vcpu);
            }

            w.WriteEndArray();
        }

        WriteFacts(w, new DecisionFacts(e.VmRunning, null, null, 0, settlesEscalation));
        if (ofRun is not null)
        {
            w.WriteString("of-run", ofRun);
            w.WriteNumber("of-id", ofId);
        }

        w.WriteEndObject();
    });

    internal static byte[] Outcome(string run, long id, DateTimeOffset now, string result, IReadOnlyList<ActionOutcome> steps, long settles = 0, string? note = null) => EventJournal.Line(w =>
    {
        Header(w, "outcome", run, now);
        w.WriteNumber("id", id);
        w.WriteString("result", result);
        if (settles != 0)
        {
            w.WriteNumber("settles", settles);
        }

        if (note is not null)
        {
            w.WriteString("note", note);
        }

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
