using System.Buffers;
using System.Text;
using System.Text.Json;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

/// <summary>
/// Device events as JSON in the shape of QEMU's QMP events, so management code written for QEMU
/// maps them directly: <c>{"event": NAME, "data": {...}, "timestamp": {"seconds": s, "microseconds": us}, "virtio-wdt": {...}}</c>.
/// </summary>
/// <remarks>
/// <para>Names: a panic is <c>GUEST_PANICKED</c>, a crash-loaded report <c>GUEST_CRASHLOADED</c>, a
/// shutdown report <c>GUEST_PVSHUTDOWN</c>, an expiry <c>WATCHDOG</c>. Kinds QEMU has no event for are
/// <c>VIRTIO_WDT_ARMED</c>, <c>VIRTIO_WDT_STOPPED</c>, <c>VIRTIO_WDT_PRETIMEOUT</c>,
/// <c>VIRTIO_WDT_PROTOCOL_ERROR</c> and <c>VIRTIO_WDT_DRIVER_RESET</c>.</para>
/// <para><c>data</c> holds exactly what QEMU's schema (<c>qapi/run-state.json</c>) gives the event
/// of that name, so a client that validates against it accepts ours: <c>GUEST_PANICKED</c> and
/// <c>GUEST_CRASHLOADED</c> carry <c>action</c> (GuestPanicAction: <c>pause</c>, <c>poweroff</c>,
/// <c>run</c>) and, for Windows bugcheck and Hyper-V codes, <c>info</c> of type <c>hyper-v</c>
/// (<c>arg1</c>…<c>arg5</c>); <c>WATCHDOG</c> carries <c>action</c> (WatchdogAction: <c>reset</c>,
/// <c>shutdown</c>, <c>poweroff</c>, <c>pause</c>, <c>debug</c>, <c>none</c>, <c>inject-nmi</c>);
/// <c>GUEST_PVSHUTDOWN</c> has no <c>data</c>; our own <c>VIRTIO_WDT_*</c> events have none either.
/// The action says what happens to the VM in QEMU's terms: a panic that is preserved is
/// <c>pause</c>, destroyed <c>poweroff</c>, anything after which the VM runs on (log-only, the grace
/// window, a restart, which QEMU reports the same way for a guest that reboots itself) <c>run</c>;
/// an expiry whose policy dumps memory and lets the guest run on is <c>none</c>.</para>
/// <para>Everything else is in the top-level member <c>virtio-wdt</c>, which QMP clients ignore
/// when unknown: <c>device</c>, <c>sequence</c>, <c>vcpu</c>, <c>policy</c> (the libvirt-style
/// action), <c>run-time-ms</c>, <c>guest-time-ns</c>, <c>source</c>, <c>message</c>, <c>log-tail</c>,
/// <c>codes</c>, <c>code-format</c>, <c>coalesced</c>, and per kind <c>timeout-ms</c>,
/// <c>time-left-ms</c>, <c>pretimeout-ms</c>, <c>by-heartbeat</c>, <c>reason</c>, <c>error</c>,
/// <c>queue</c>, <c>detail</c>, <c>watchdog-kept-running</c>.</para>
/// </remarks>
public static class QmpEvents
{
    /// <summary>The QMP-style event name of an event kind.</summary>
    /// <param name="kind">The kind.</param>
    /// <returns>For example <c>GUEST_PANICKED</c>.</returns>
    public static string NameOf(WatchdogEventKind kind) => kind switch
    {
        WatchdogEventKind.GuestPanicked => "GUEST_PANICKED",
        WatchdogEventKind.GuestCrashLoaded => "GUEST_CRASHLOADED",
        WatchdogEventKind.GuestShutdown => "GUEST_PVSHUTDOWN",
        WatchdogEventKind.Expired => "WATCHDOG",
        WatchdogEventKind.Armed => "VIRTIO_WDT_ARMED",
        WatchdogEventKind.Stopped => "VIRTIO_WDT_STOPPED",
        WatchdogEventKind.Pretimeout => "VIRTIO_WDT_PRETIMEOUT",
        WatchdogEventKind.ProtocolError => "VIRTIO_WDT_PROTOCOL_ERROR",
        WatchdogEventKind.VcpuStalled => "VIRTIO_WDT_VCPU_STALLED",
        WatchdogEventKind.VcpuRecovered => "VIRTIO_WDT_VCPU_RECOVERED",
        WatchdogEventKind.VcpuStallExpired => "VIRTIO_WDT_VCPU_STALL_EXPIRED",
        _ => "VIRTIO_WDT_DRIVER_RESET",
    };

    /// <summary>QEMU's <c>data.action</c> value for an event handled with a policy action.</summary>
    /// <param name="kind">The event's kind.</param>
    /// <param name="policyAction">The policy action in libvirt spelling (<c>destroy</c>, <c>dump</c>, <c>log</c>, …).</param>
    /// <returns>The QMP action value, or null when the event has none in QEMU.</returns>
    public static string? QmpAction(WatchdogEventKind kind, string policyAction) => kind switch
    {
        // GuestPanicAction (qapi/run-state.json): pause, poweroff, run.
        WatchdogEventKind.GuestPanicked => policyAction switch
        {
            "preserve" => "pause",
            "destroy" or "coredump-destroy" => "poweroff",
            _ => "run",
        },
        WatchdogEventKind.GuestCrashLoaded => "run",

        // WatchdogAction (qapi/run-state.json): reset, shutdown, poweroff, pause, debug, none, inject-nmi.
        WatchdogEventKind.Expired => policyAction switch
        {
            "reset" or "shutdown" or "poweroff" or "pause" or "inject-nmi" or "none" => policyAction,
            _ => "none",
        },
        _ => null,
    };

    /// <summary>The event as one line of QMP-shaped JSON.</summary>
    /// <param name="evt">The device event.</param>
    /// <param name="policyAction">The policy action taken (libvirt spelling); null to leave <c>action</c> and <c>policy</c> out.</param>
    /// <returns>Compact JSON.</returns>
    public static string ToJson(WatchdogEvent evt, string? policyAction)
    {
        ArgumentNullException.ThrowIfNull(evt);
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            Write(writer, evt, policyAction);
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    internal static void Write(Utf8JsonWriter writer, WatchdogEvent evt, string? policyAction)
    {
        writer.WriteStartObject();
        writer.WriteString("event", NameOf(evt.Kind));
        WriteSchemaData(writer, evt, policyAction);
        long microseconds = evt.HostTime.ToUnixTimeMilliseconds() * 1000 + (evt.HostTime.Ticks % TimeSpan.TicksPerMillisecond / 10);
        writer.WriteStartObject("timestamp");
        writer.WriteNumber("seconds", microseconds / 1_000_000);
        writer.WriteNumber("microseconds", microseconds % 1_000_000);
        writer.WriteEndObject();

        writer.WriteStartObject("virtio-wdt");
        writer.WriteString("device", evt.DeviceId);
        writer.WriteNumber("sequence", evt.Sequence);
        if (evt.VcpuId is uint vcpu)
        {
            writer.WriteNumber("vcpu", vcpu);
        }

        if (policyAction is not null)
        {
            writer.WriteString("policy", policyAction);
        }

        writer.WriteNumber("run-time-ms", (long)evt.VmRunTime.TotalMilliseconds);
        if (evt.GuestTime is TimeSpan guestTime)
        {
            writer.WriteNumber("guest-time-ns", guestTime.Ticks * 100);
        }

        if (evt.CoalescedCount > 0)
        {
            writer.WriteNumber("coalesced", evt.CoalescedCount);
        }

        WriteKindMembers(writer, evt);
        writer.WriteEndObject();
        writer.WriteEndObject();
    }

    // `data` exactly as QEMU's schema has it for the events that share QEMU's names; none otherwise.
    // Without a policy action (a status query's last event) the action is what happens to a VM
    // nobody acts on: it runs.
    private static void WriteSchemaData(Utf8JsonWriter writer, WatchdogEvent evt, string? policyAction)
    {
        if (evt.Kind is not (WatchdogEventKind.GuestPanicked or WatchdogEventKind.GuestCrashLoaded or WatchdogEventKind.Expired))
        {
            return;
        }

        writer.WriteStartObject("data");
        writer.WriteString("action", QmpAction(evt.Kind, policyAction ?? "none"));
        if (evt is GuestReportEvent { Kind: not WatchdogEventKind.Expired, CodeFormat: PanicCodeFormat.HyperVCrash or PanicCodeFormat.WindowsBugcheck, Codes.Count: > 0 } hv)
        {
            // GuestPanicInformationHyperV: arg1..arg5 (STOP code and four parameters for Windows).
            writer.WriteStartObject("info");
            writer.WriteString("type", "hyper-v");
            for (int i = 0; i < 5; i++)
            {
                writer.WriteNumber(s_args[i], i < hv.Codes.Count ? hv.Codes[i] : 0);
            }

            writer.WriteEndObject();
        }

        writer.WriteEndObject();
    }

    private static readonly string[] s_args = ["arg1", "arg2", "arg3", "arg4", "arg5"];

    private static void WriteKindMembers(Utf8JsonWriter writer, WatchdogEvent evt)
    {
        switch (evt)
        {
            case GuestReportEvent report:
                writer.WriteString("source", report.Source switch
                {
                    WatchdogEventSource.ConfigField => "panic-events",
                    WatchdogEventSource.EventRecord => "event-record",
                    _ => "event-record-at-reset",
                });
                if (report.Message is not null)
                {
                    writer.WriteString("message", report.Message);
                }

                if (report.Codes.Count > 0)
                {
                    writer.WriteString("code-format", report.CodeFormat switch
                    {
                        PanicCodeFormat.WindowsBugcheck => "windows-bugcheck",
                        PanicCodeFormat.HyperVCrash => "hyper-v",
                        _ => "generic",
                    });
                    writer.WriteStartArray("codes");
                    foreach (ulong code in report.Codes)
                    {
                        writer.WriteNumberValue(code);
                    }

                    writer.WriteEndArray();
                }

                if (report.LogTail is not null)
                {
                    writer.WriteString("log-tail", report.LogTail);
                }

                break;
            case WatchdogExpiredEvent expired:
                writer.WriteNumber("timeout-ms", (long)expired.Timeout.TotalMilliseconds);
                break;
            case WatchdogArmedEvent armed:
                writer.WriteNumber("timeout-ms", (long)armed.Timeout.TotalMilliseconds);
                writer.WriteBoolean("by-heartbeat", armed.ByHeartbeat);
                break;
            case WatchdogPretimeoutEvent pre:
                writer.WriteNumber("time-left-ms", (long)pre.TimeLeft.TotalMilliseconds);
                writer.WriteNumber("timeout-ms", (long)pre.Timeout.TotalMilliseconds);
                writer.WriteNumber("pretimeout-ms", (long)pre.Pretimeout.TotalMilliseconds);
                break;
            case WatchdogStoppedEvent stopped:
                writer.WriteString("reason", stopped.Reason switch
                {
                    WatchdogStopReason.DriverStop => "driver-stop",
                    WatchdogStopReason.DeviceReset => "device-reset",
                    _ => "vm-reset",
                });
                break;
            case GuestProtocolErrorEvent error:
                writer.WriteString("error", error.Error.ToString());
                writer.WriteNumber("queue", error.QueueIndex);
                writer.WriteString("detail", error.Detail);
                break;
            case DriverResetEvent reset:
                writer.WriteBoolean("watchdog-kept-running", reset.WatchdogKeptRunning);
                break;
        }
    }
}
