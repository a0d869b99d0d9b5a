using System.Buffers;
using System.Text;
using System.Text.Json;

namespace VirtioPanic.Hosting.Control;

// The management socket's commands (ManagementSocket's remarks list them). Every argument is
// untrusted: a missing or ill-typed member is a GenericError naming it, an unknown device is
// DeviceNotFound, an unknown command CommandNotFound (QMP's error classes, qapi/error.json), and
// nothing a client sends throws out of here.
internal sealed class ManagementCommands
{
    private static readonly string[] s_commands = ["qmp_capabilities", "query-commands", "query-service", "query-devices", "query-device", "query-policy", "set-policy", "continue"];
    private static readonly JsonWriterOptions s_writer = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly PolicyService _service;

    internal ManagementCommands(PolicyService service) => _service = service;

    internal static string Greeting() => Json(w =>
    {
        w.WriteStartObject();
        w.WriteStartObject("QMP");
        w.WriteStartObject("version");
        w.WriteStartObject("virtio-wdt");
        w.WriteString("package", typeof(ManagementCommands).Assembly.GetName().Version?.ToString() ?? "0");
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteStartArray("capabilities");
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    });

    internal static string Error(JsonElement? id, string errorClass, string description) => Json(w =>
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("class", errorClass);
        w.WriteString("desc", description);
        w.WriteEndObject();
        WriteId(w, id);
        w.WriteEndObject();
    });

    internal static string EventsLost(long count) => Json(w =>
    {
        long us = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000;
        w.WriteStartObject();
        w.WriteString("event", "VIRTIO_WDT_EVENTS_LOST");
        w.WriteStartObject("timestamp");
        w.WriteNumber("seconds", us / 1_000_000);
        w.WriteNumber("microseconds", us % 1_000_000);
        w.WriteEndObject();
        w.WriteStartObject("virtio-wdt");
        w.WriteNumber("count", count);
        w.WriteEndObject();
        w.WriteEndObject();
    });

    // Returns the reply line and whether the client leaves capabilities negotiation with it.
    internal async Task<(string Reply, bool EnterCommandMode)> ExecuteAsync(JsonElement message, bool commandMode, CancellationToken cancellationToken)
    {
        JsonElement? id = message.TryGetProperty("id", out JsonElement i) ? i : null;
        if (!message.TryGetProperty("execute", out JsonElement execute) || execute.ValueKind != JsonValueKind.String)
        {
            return (Error(id, "GenericError", "expected a member 'execute' naming a command"), false);
        }

        string command = execute.GetString()!;
        JsonElement arguments = message.TryGetProperty("arguments", out JsonElement a) ? a : default;
        if (arguments.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Object))
        {
            return (Error(id, "GenericError", "'arguments' must be an object"), false);
        }

        if (!commandMode)
        {
            return command == "qmp_capabilities"
                ? (Return(id, w => EmptyObject(w)), true)
                : (Error(id, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'"), false);
        }

        try
        {
            string reply = command switch
            {
                "qmp_capabilities" => Error(id, "CommandNotFound", "Capabilities negotiation is already complete, command ignored"),
                "query-commands" => Return(id, w =>
                {
                    w.WriteStartArray();
                    foreach (string name in s_commands)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", name);
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                }),
                "query-service" => Return(id, w => WriteRaw(w, _service.GetStatusJson())),
                "query-devices" => Return(id, w => WriteRaw(w, DevicesJson())),
                "query-device" => WithDevice(id, arguments, device => Return(id, w => WriteRaw(w, DeviceJson(device)))),
                "query-policy" => WithDevice(id, arguments, device => Return(id, w => WriteRaw(w, PolicyJson(device)))),
                "set-policy" => await SetPolicyAsync(id, arguments, cancellationToken).ConfigureAwait(false),
                "continue" => await ContinueAsync(id, arguments, cancellationToken).ConfigureAwait(false),
                _ => Error(id, "CommandNotFound", $"The command {command} has not been found"),
            };
            return (reply, false);
        }
        catch (KeyNotFoundException)
        {
            return (Error(id, "DeviceNotFound", "no such device"), false);
        }
        catch (ArgumentException e)
        {
            return (Error(id, "GenericError", e.Message), false);
        }
    }

    private string WithDevice(JsonElement? id, JsonElement arguments, Func<string, string> then)
    {
        if (DeviceArgument(arguments) is not { } device)
        {
            return Error(id, "GenericError", "expected 'device': a device id (string)");
        }

        return _service.GetDevice(device) is null ? Error(id, "DeviceNotFound", $"no device '{device}'") : then(device);
    }

    private async Task<string> SetPolicyAsync(JsonElement? id, JsonElement arguments, CancellationToken cancellationToken)
    {
        if (DeviceArgument(arguments) is not { } device)
        {
            return Error(id, "GenericError", "expected 'device': a device id (string)");
        }

        if (_service.GetDevice(device) is null)
        {
            return Error(id, "DeviceNotFound", $"no device '{device}'");
        }

        if (!arguments.TryGetProperty("policy", out JsonElement changes) || changes.ValueKind != JsonValueKind.Object)
        {
            return Error(id, "GenericError", "expected 'policy': an object with the members to change");
        }

        DevicePolicy policy = _service.GetPolicy(device);
        foreach (JsonProperty member in changes.EnumerateObject())
        {
            string? error = null;
            policy = member.Name switch
            {
                "on-panic" => PanicSequence(member, policy, ref error),
                "on-watchdog" => WatchdogSequence(member, ref error, WatchdogAction.None) is { } w ? policy with { OnWatchdog = w.First, WatchdogEscalation = w.Later } : policy,
                "on-vcpu-stall" => WatchdogSequence(member, ref error, WatchdogAction.None) is { } v ? policy with { OnVcpuStall = v.First, VcpuStallEscalation = v.Later } : policy,
                "on-crash-kernel-timeout" => Parse<PanicAction>(member, ref error) is { } c ? policy with { OnCrashKernelTimeout = c } : policy,
                "panic-grace-period-ms" => Milliseconds(member, ref error) is { } g ? policy with { PanicGracePeriod = g } : policy,
                "crash-kernel-deadline-ms" => Milliseconds(member, ref error) is { } d ? policy with { CrashKernelDeadline = d } : policy,
                "storm-window-ms" => Milliseconds(member, ref error) is { } sw ? policy with { StormWindow = sw } : policy,
                "storm-threshold" => member.Value.TryGetInt32(out int t) ? policy with { StormThreshold = t } : Fail(policy, ref error, $"'storm-threshold' must be an integer, not {member.Value.GetRawText()}"),
                _ => Fail(policy, ref error, $"unknown policy member '{member.Name}'; known: on-panic, on-watchdog, on-vcpu-stall, on-crash-kernel-timeout, panic-grace-period-ms, crash-kernel-deadline-ms, storm-threshold, storm-window-ms"),
            };
            if (error is not null)
            {
                return Error(id, "GenericError", error);
            }
        }

        await _service.SetPolicyAsync(device, policy, cancellationToken).ConfigureAwait(false);
        return Return(id, w => WriteRaw(w, PolicyJson(device)));
    }

    private async Task<string> ContinueAsync(JsonElement? id, JsonElement arguments, CancellationToken cancellationToken)
    {
        if (DeviceArgument(arguments) is not { } device)
        {
            return Error(id, "GenericError", "expected 'device': a device id (string)");
        }

        if (_service.GetDevice(device) is null)
        {
            return Error(id, "DeviceNotFound", $"no device '{device}'");
        }

        HandledEvent handled = await _service.ContinueAsync(device, cancellationToken).ConfigureAwait(false);
        return Return(id, w =>
        {
            w.WriteStartObject();
            w.WriteString("outcome", handled.Outcome);
            w.WriteStartArray("steps");
            foreach (ActionOutcome step in handled.Steps)
            {
                w.WriteStartObject();
                w.WriteString("op", PolicyNames.Of(step.Operation));
                w.WriteBoolean("succeeded", step.Succeeded);
                if (step.Error is not null)
                {
                    w.WriteString("error", step.Error);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    private static T? Parse<T>(JsonProperty member, ref string? error)
        where T : struct, Enum
    {
        if (member.Value.ValueKind == JsonValueKind.String && PolicyNames.TryParse(member.Value.GetString(), out T value))
        {
            return value;
        }

        error = $"'{member.Name}' must be one of {PolicyNames.List<T>()}, not {member.Value.GetRawText()}";
        return null;
    }

    // An action or a sequence ("inject-nmi; 10s dump; 10s reset"), as in configuration.
    private static (WatchdogAction First, WatchdogStep[] Later)? WatchdogSequence(JsonProperty member, ref string? error, WatchdogAction wait)
    {
        string? why = null;
        if (member.Value.ValueKind == JsonValueKind.String
            && Policy.EscalationText.TryParse(member.Value.GetString(), wait, out WatchdogAction first, out List<(TimeSpan After, WatchdogAction Action)> rest, out why))
        {
            return (first, [.. rest.Select(s => new WatchdogStep(s.After, s.Action))]);
        }

        error = $"'{member.Name}' must be one of {PolicyNames.List<WatchdogAction>()}, or a sequence such as \"inject-nmi; 10s dump; 10s reset\", not {member.Value.GetRawText()}" + (member.Value.ValueKind == JsonValueKind.String ? $": {why}" : string.Empty);
        return null;
    }

    private static DevicePolicy PanicSequence(JsonProperty member, DevicePolicy policy, ref string? error)
    {
        string? why = null;
        if (member.Value.ValueKind == JsonValueKind.String
            && Policy.EscalationText.TryParse(member.Value.GetString(), PanicAction.LogOnly, out PanicAction first, out List<(TimeSpan After, PanicAction Action)> rest, out why))
        {
            return policy with { OnPanic = first, PanicEscalation = [.. rest.Select(s => new PanicStep(s.After, s.Action))] };
        }

        error = $"'{member.Name}' must be one of {PolicyNames.List<PanicAction>()}, or a sequence such as \"log-only; 30s coredump-restart\", not {member.Value.GetRawText()}" + (member.Value.ValueKind == JsonValueKind.String ? $": {why}" : string.Empty);
        return policy;
    }

    private static TimeSpan? Milliseconds(JsonProperty member, ref string? error)
    {
        if (member.Value.TryGetInt64(out long ms) && ms >= 0 && ms <= (long)TimeSpan.FromDays(1).TotalMilliseconds)
        {
            return TimeSpan.FromMilliseconds(ms);
        }

        error = $"'{member.Name}' must be a whole number of milliseconds from 0 to 86400000, not {member.Value.GetRawText()}";
        return null;
    }

    private static DevicePolicy Fail(DevicePolicy policy, ref string? error, string message)
    {
        error = message;
        return policy;
    }

    private static string? DeviceArgument(JsonElement arguments) =>
        arguments.ValueKind == JsonValueKind.Object && arguments.TryGetProperty("device", out JsonElement d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null;

    // The status document's "devices" array, and one device of it.
    private string DevicesJson()
    {
        using JsonDocument status = JsonDocument.Parse(_service.GetStatusJson());
        return status.RootElement.GetProperty("devices").GetRawText();
    }

    private string DeviceJson(string device)
    {
        using JsonDocument status = JsonDocument.Parse(_service.GetStatusJson());
        foreach (JsonElement d in status.RootElement.GetProperty("devices").EnumerateArray())
        {
            if (d.GetProperty("device").GetString() == device)
            {
                return d.GetRawText();
            }
        }

        throw new KeyNotFoundException(device);
    }

    private string PolicyJson(string device)
    {
        using JsonDocument d = JsonDocument.Parse(DeviceJson(device));
        return d.RootElement.GetProperty("policy").GetRawText();
    }

    private static string Return(JsonElement? id, Action<Utf8JsonWriter> value) => Json(w =>
    {
        w.WriteStartObject();
        w.WritePropertyName("return");
        value(w);
        WriteId(w, id);
        w.WriteEndObject();
    });

    private static void WriteId(Utf8JsonWriter w, JsonElement? id)
    {
        if (id is { } value)
        {
            w.WritePropertyName("id");
            value.WriteTo(w);
        }
    }

    private static void EmptyObject(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteEndObject();
    }

    private static void WriteRaw(Utf8JsonWriter w, string json) => w.WriteRawValue(json, skipInputValidation: true);

    private static string Json(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, s_writer))
        {
            write(w);
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}
