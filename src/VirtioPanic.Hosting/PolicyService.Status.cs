using System.Buffers;
using System.Text;
using System.Text.Json;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Hosting;

// The management query, typed and as JSON.
public sealed partial class PolicyService
{
    /// <summary>Every attached device: presence, negotiated features, driver bound, watchdog armed / timeout / time left, last event, policies in force.</summary>
    /// <returns>A snapshot.</returns>
    public VirtioPanicStatus GetStatus()
    {
        DeviceReport[] devices = [.. _devices.Values.Select(Report).OrderBy(d => d.DeviceId, StringComparer.Ordinal)];
        return new VirtioPanicStatus
        {
            Time = _time.GetUtcNow(),
            Running = IsRunning,
            JournalPath = Path.GetFullPath(_options.JournalPath),
            JournalError = _journal.Error,
            DefaultPolicy = _options.Policy,
            Devices = devices,
        };
    }

    /// <summary>One device's report.</summary>
    /// <param name="deviceId">The device's id.</param>
    /// <returns>The report, or null when no such device is attached.</returns>
    public DeviceReport? GetDevice(string deviceId) => _devices.TryGetValue(deviceId, out DeviceEntry? entry) ? Report(entry) : null;

    /// <summary>The management query as JSON (kebab-case members; events in QMP shape, see <see cref="QmpEvents"/>).</summary>
    /// <param name="indented">Whether to indent.</param>
    /// <returns>The JSON text.</returns>
    public string GetStatusJson(bool indented = false)
    {
        VirtioPanicStatus status = GetStatus();
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = indented, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("time", status.Time);
            w.WriteBoolean("running", status.Running);
            w.WriteString("journal", status.JournalPath);
            w.WriteBoolean("journal-degraded", status.JournalError is not null);
            w.WriteString("journal-error", status.JournalError);
            w.WritePropertyName("default-policy");
            WritePolicy(w, status.DefaultPolicy);
            w.WriteStartArray("devices");
            foreach (DeviceReport d in status.Devices)
            {
                WriteDevice(w, d);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void WriteDevice(Utf8JsonWriter w, DeviceReport d)
    {
        w.WriteStartObject();
        WatchdogDeviceStatus device = d.Device;
        w.WriteString("device", d.DeviceId);
        w.WriteBoolean("present", device.IsPresent);
        w.WriteBoolean("driver-bound", device.DriverBound);
        WriteFeatures(w, "offered-features", device.OfferedFeatures);
        WriteFeatures(w, "negotiated-features", device.NegotiatedFeatures);
        w.WriteStartObject("watchdog");
        w.WriteBoolean("armed", device.Armed);
        w.WriteNumber("timeout-ms", (long)device.Timeout.TotalMilliseconds);
        if (device.TimeLeft is TimeSpan left)
        {
            w.WriteNumber("time-left-ms", (long)left.TotalMilliseconds);
        }
        else
        {
            w.WriteNull("time-left-ms");
        }

        w.WriteBoolean("expired", device.Expired);
        w.WriteBoolean("vm-paused", device.Paused);
        w.WriteEndObject();
        w.WriteString("condition", PolicyNames.Of(d.Condition));
        w.WritePropertyName("policy");
        WritePolicy(w, d.Policy);
        w.WriteString("effective-on-panic", PolicyNames.Of(d.EffectivePanicAction));
        w.WriteBoolean("storm-guard-tripped", d.StormGuardTripped);
        if (d.Deadline is { } deadline)
        {
            w.WriteStartObject("deadline");
            w.WriteString("kind", PolicyNames.Of(deadline.Kind));
            w.WriteString("due", deadline.Due);
            w.WriteNumber("trigger-sequence", deadline.TriggerSequence);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("deadline");
        }

        if (d.Escalation is { } escalation)
        {
            w.WriteStartObject("escalation");
            w.WriteString("kind", PolicyEngine.KindName(escalation.Kind));
            w.WriteString("plan", escalation.Plan);
            w.WriteNumber("trigger-sequence", escalation.TriggerSequence);
            w.WriteNumber("step", escalation.Step);
            w.WriteNumber("of", escalation.StepCount);
            w.WriteString("next-action", escalation.NextAction);
            w.WriteString("next-due", escalation.NextDue);
            if (escalation.Vcpus.Count > 0)
            {
                w.WriteStartArray("vcpus");
                foreach (uint vcpu in escalation.Vcpus)
                {
                    w.WriteNumberValue(vcpu);
                }

                w.WriteEndArray();
            }

            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("escalation");
        }

        if (device.LastEvent is { } last)
        {
            w.WritePropertyName("last-event");
            QmpEvents.Write(w, last, policyAction: null);
        }
        else
        {
            w.WriteNull("last-event");
        }

        if (d.LastHandled is { } handled)
        {
            w.WriteStartObject("last-handled");
            w.WriteString("event", handled.Name);
            w.WriteNumber("sequence", handled.Sequence);
            w.WriteString("action", handled.PolicyAction);
            w.WriteString("outcome", handled.Outcome);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("last-handled");
        }

        w.WriteNumber("events-handled", d.EventsHandled);
        w.WriteEndObject();
    }

    private static void WritePolicy(Utf8JsonWriter w, DevicePolicy p)
    {
        w.WriteStartObject();
        w.WriteString("on-panic", PolicyNames.PanicPlan(p));
        w.WriteString("on-watchdog", PolicyNames.WatchdogPlan(p));
        w.WriteString("on-vcpu-stall", PolicyNames.VcpuStallPlan(p));
        w.WriteNumber("panic-grace-period-ms", (long)p.PanicGracePeriod.TotalMilliseconds);
        w.WriteNumber("crash-kernel-deadline-ms", (long)p.CrashKernelDeadline.TotalMilliseconds);
        w.WriteString("on-crash-kernel-timeout", PolicyNames.Of(p.OnCrashKernelTimeout));
        w.WriteNumber("storm-threshold", p.StormThreshold);
        w.WriteNumber("storm-window-ms", (long)p.StormWindow.TotalMilliseconds);
        w.WriteEndObject();
    }

    private static void WriteFeatures(Utf8JsonWriter w, string name, WatchdogFeatures features)
    {
        w.WriteStartArray(name);
        foreach (WatchdogFeatures flag in Enum.GetValues<WatchdogFeatures>())
        {
            if (flag is not WatchdogFeatures.None and not WatchdogFeatures.All && (features & flag) == flag)
            {
                w.WriteStringValue(PolicyNames.Of(flag));
            }
        }

        w.WriteEndArray();
    }

    private static DeviceReport Report(DeviceEntry entry)
    {
        WatchdogDeviceStatus status = entry.Device.GetStatus();
        DevicePolicyState state = entry.State;
        DevicePolicy policy = entry.Policy;
        return new DeviceReport
        {
            Device = status,
            Policy = policy,
            EffectivePanicAction = PolicyEngine.EffectivePanicAction(state, policy),
            StormGuardTripped = state.StormGuard,
            Condition = state.Condition,
            Deadline = state.Deadline,
            Escalation = Pending(state.Escalation),
            LastHandled = entry.LastHandled,
            EventsHandled = entry.EventsHandled,
        };
    }
}
