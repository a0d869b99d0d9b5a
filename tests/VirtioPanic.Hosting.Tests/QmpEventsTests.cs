using System.Text.Json;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting.Tests;

// Event JSON follows QEMU's QMP events where they overlap.
public sealed class QmpEventsTests
{
    private static readonly DateTimeOffset s_time = new(2025, 6, 1, 12, 0, 0, 123, TimeSpan.Zero);

    [Test]
    public void GuestPanicked_HasQmpShape_WithHyperVInfoAndExtensions()
    {
        var evt = new GuestPanickedEvent
        {
            DeviceId = "vm1-wdt", Sequence = 7, VcpuId = 2, VmRunTime = TimeSpan.FromSeconds(3), HostTime = s_time,
            Source = WatchdogEventSource.EventRecord, CodeFormat = PanicCodeFormat.WindowsBugcheck, Codes = [0x9F, 3, 4], Message = "bugcheck",
        };

        JsonElement root = JsonDocument.Parse(QmpEvents.ToJson(evt, "destroy")).RootElement;
        JsonElement data = root.GetProperty("data");
        JsonElement ours = root.GetProperty("virtio-wdt");
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("event").GetString(), Is.EqualTo("GUEST_PANICKED"));
            Assert.That(data.GetProperty("action").GetString(), Is.EqualTo("poweroff"));
            Assert.That(data.GetProperty("info").GetProperty("type").GetString(), Is.EqualTo("hyper-v"));
            Assert.That(data.GetProperty("info").GetProperty("arg1").GetUInt64(), Is.EqualTo(0x9Fu));
            Assert.That(data.GetProperty("info").GetProperty("arg5").GetUInt64(), Is.Zero);
            Assert.That(ours.GetProperty("device").GetString(), Is.EqualTo("vm1-wdt"));
            Assert.That(ours.GetProperty("sequence").GetInt64(), Is.EqualTo(7));
            Assert.That(ours.GetProperty("vcpu").GetUInt32(), Is.EqualTo(2u));
            Assert.That(ours.GetProperty("policy").GetString(), Is.EqualTo("destroy"));
            Assert.That(ours.GetProperty("message").GetString(), Is.EqualTo("bugcheck"));
            Assert.That(data.EnumerateObject().Select(p => p.Name), Is.EquivalentTo(new[] { "action", "info" }), "only QEMU's members in data");
            Assert.That(root.GetProperty("timestamp").GetProperty("seconds").GetInt64(), Is.EqualTo(s_time.ToUnixTimeSeconds()));
            Assert.That(root.GetProperty("timestamp").GetProperty("microseconds").GetInt64(), Is.EqualTo(123_000));
        });
    }

    [TestCase("preserve", "pause")]
    [TestCase("log-only", "run")]
    [TestCase("grace", "run")]
    [TestCase("coredump-destroy", "poweroff")]
    [TestCase("restart", "run")]
    [TestCase("coredump-restart", "run")]
    public void GuestPanicked_ActionMapsToQemusGuestPanicAction(string policy, string qmp) =>
        Assert.That(QmpEvents.QmpAction(WatchdogEventKind.GuestPanicked, policy), Is.EqualTo(qmp));

    [TestCase("reset", "reset")]
    [TestCase("shutdown", "shutdown")]
    [TestCase("poweroff", "poweroff")]
    [TestCase("pause", "pause")]
    [TestCase("dump", "none")]
    [TestCase("inject-nmi", "inject-nmi")]
    [TestCase("none", "none")]
    public void Watchdog_ActionMapsToQemusWatchdogAction(string policy, string qmp) =>
        Assert.That(QmpEvents.QmpAction(WatchdogEventKind.Expired, policy), Is.EqualTo(qmp));

    [Test]
    public void EveryEventKind_HasItsOwnName_TheVcpuStallKindsIncluded()
    {
        string[] names = [.. Enum.GetValues<WatchdogEventKind>().Select(QmpEvents.NameOf)];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(names, Is.Unique);
            Assert.That(QmpEvents.NameOf(WatchdogEventKind.VcpuStalled), Is.EqualTo("VIRTIO_WDT_VCPU_STALLED"));
            Assert.That(QmpEvents.NameOf(WatchdogEventKind.VcpuRecovered), Is.EqualTo("VIRTIO_WDT_VCPU_RECOVERED"));
            Assert.That(QmpEvents.NameOf(WatchdogEventKind.VcpuStallExpired), Is.EqualTo("VIRTIO_WDT_VCPU_STALL_EXPIRED"));
        }
    }

    [Test]
    public void CrashLoadedAndShutdown_UseQemusNames()
    {
        var crash = new GuestCrashLoadedEvent { DeviceId = "d", Sequence = 1, VmRunTime = default, HostTime = s_time, Source = WatchdogEventSource.ConfigField };
        var shutdown = new GuestShutdownEvent { DeviceId = "d", Sequence = 2, VmRunTime = default, HostTime = s_time, Source = WatchdogEventSource.ConfigField };

        JsonElement c = JsonDocument.Parse(QmpEvents.ToJson(crash, "log")).RootElement;
        JsonElement s = JsonDocument.Parse(QmpEvents.ToJson(shutdown, "log")).RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(c.GetProperty("event").GetString(), Is.EqualTo("GUEST_CRASHLOADED"));
            Assert.That(c.GetProperty("data").GetProperty("action").GetString(), Is.EqualTo("run"));
            Assert.That(s.GetProperty("event").GetString(), Is.EqualTo("GUEST_PVSHUTDOWN"));
            Assert.That(s.TryGetProperty("data", out _), Is.False, "GUEST_PVSHUTDOWN has no data in QEMU's schema");
            Assert.That(s.GetProperty("virtio-wdt").GetProperty("sequence").GetInt64(), Is.EqualTo(2));
        });
    }

    // Every kind, with every policy action of both vocabularies and with none: `data` validates
    // against QEMU's schema (QmpSchema) for QEMU's names, and is absent for ours.
    [Test]
    public void EveryEventShape_ValidatesAgainstQemusSchema()
    {
        string[] actions = [.. Enum.GetValues<PanicAction>().Select(a => PolicyNames.Of(a)), .. Enum.GetValues<WatchdogAction>().Select(a => PolicyNames.Of(a)), "log"];
        var problems = new List<string>();
        int checkedEvents = 0;
        foreach (WatchdogEvent evt in SampleEvents())
        {
            foreach (string? action in actions.Append(null))
            {
                JsonElement root = JsonDocument.Parse(QmpEvents.ToJson(evt, action)).RootElement;
                string name = root.GetProperty("event").GetString()!;
                string where = $"{name} with policy {action ?? "(none)"}";
                checkedEvents++;
                if (root.GetProperty("timestamp").EnumerateObject().Select(p => p.Name).Order().SequenceEqual(["microseconds", "seconds"]) is false)
                {
                    problems.Add($"{where}: timestamp");
                }

                bool hasData = root.TryGetProperty("data", out JsonElement data);
                if (!QmpSchema.Events.TryGetValue(name, out var schema))
                {
                    if (!name.StartsWith("VIRTIO_WDT_", StringComparison.Ordinal) || hasData)
                    {
                        problems.Add($"{where}: our own events are VIRTIO_WDT_* without data");
                    }

                    continue;
                }

                if (schema is not { } members)
                {
                    if (hasData)
                    {
                        problems.Add($"{where}: has data, QEMU's has none");
                    }

                    continue;
                }

                if (!hasData)
                {
                    problems.Add($"{where}: no data");
                    continue;
                }

                problems.AddRange(data.EnumerateObject().Where(p => !members.Allowed.Contains(p.Name)).Select(p => $"{where}: data.{p.Name} is not in QEMU's schema"));
                problems.AddRange(members.Required.Where(r => !data.TryGetProperty(r, out _)).Select(r => $"{where}: data.{r} missing"));
                if (data.TryGetProperty("action", out JsonElement a) && !members.Action.Contains(a.GetString()))
                {
                    problems.Add($"{where}: data.action {a} is not a value of QEMU's enum");
                }

                if (data.TryGetProperty("info", out JsonElement info))
                {
                    if (!QmpSchema.GuestPanicInformationType.Contains(info.GetProperty("type").GetString()) || info.EnumerateObject().Any(p => !QmpSchema.HyperVMembers.Contains(p.Name)) || QmpSchema.HyperVMembers.Skip(1).Any(m => info.GetProperty(m).ValueKind != JsonValueKind.Number))
                    {
                        problems.Add($"{where}: data.info is not a GuestPanicInformationHyperV");
                    }
                }
            }
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(checkedEvents, Is.GreaterThan(100));
            Assert.That(problems, Is.Empty);
        }
    }

    [Test]
    public void VcpuStallEvents_CarryTheirMembersUnderVirtioWdt()
    {
        JsonElement stalled = JsonDocument.Parse(QmpEvents.ToJson(SampleEvents().OfType<VcpuStalledEvent>().Single(), "log")).RootElement;
        JsonElement expired = JsonDocument.Parse(QmpEvents.ToJson(SampleEvents().OfType<VcpuStallExpiredEvent>().Single(), "reset")).RootElement;

        Assert.Multiple(() =>
        {
            Assert.That(stalled.TryGetProperty("data", out _), Is.False);
            Assert.That((stalled.GetProperty("virtio-wdt").GetProperty("vcpu").GetInt32(), stalled.GetProperty("virtio-wdt").GetProperty("stalled-for-ms").GetInt64(), stalled.GetProperty("virtio-wdt").GetProperty("second-stage-ms").GetInt64()), Is.EqualTo((1, 10000L, 5000L)));
            Assert.That((expired.GetProperty("virtio-wdt").GetProperty("policy").GetString(), expired.GetProperty("virtio-wdt").GetProperty("since-stall-ms").GetInt64()), Is.EqualTo(("reset", 5000L)));
        });
    }

    // Deadlines, management requests and restart recoveries have no device event and no QEMU name:
    // they are our own VIRTIO_WDT_* events, QMP-shaped (event, timestamp), without data, our
    // members under virtio-wdt; so is the management socket's own VIRTIO_WDT_EVENTS_LOST.
    [Test]
    public async Task ServiceOwnEvents_AreVirtioWdtEvents_WithTimestamp_WithoutData()
    {
        await using Rig.PolicyRig rig = await Rig.PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Preserve, PanicGracePeriod = TimeSpan.FromSeconds(5), StormThreshold = 0 });
        rig.Guest.Boot();
        rig.Guest.Panic();
        await rig.NextAsync("GUEST_PANICKED");
        rig.Time.Advance(TimeSpan.FromSeconds(6));
        HandledEvent deadline = await rig.NextAsync("DEADLINE");
        HandledEvent continued = await rig.Manager.ContinueAsync(rig.Guest.Device.Id);
        HandledEvent reset = await rig.Manager.NotifyGuestResetAsync(rig.Guest.Device.Id);
        string[] lines = [deadline.Json, continued.Json, reset.Json, VirtioPanic.Hosting.Control.ManagementCommands.EventsLost(3)];

        var problems = new List<string>();
        foreach (string line in lines)
        {
            JsonElement root = JsonDocument.Parse(line).RootElement;
            string name = root.GetProperty("event").GetString()!;
            if (!name.StartsWith("VIRTIO_WDT_", StringComparison.Ordinal) || QmpSchema.Events.ContainsKey(name))
            {
                problems.Add($"{name}: not one of our own VIRTIO_WDT_* names");
            }

            if (root.TryGetProperty("data", out _))
            {
                problems.Add($"{name}: has data");
            }

            if (!root.TryGetProperty("timestamp", out JsonElement timestamp) || !timestamp.EnumerateObject().Select(p => p.Name).Order().SequenceEqual(["microseconds", "seconds"]))
            {
                problems.Add($"{name}: timestamp");
            }

            if (!root.TryGetProperty("virtio-wdt", out JsonElement ours) || ours.ValueKind != JsonValueKind.Object)
            {
                problems.Add($"{name}: no virtio-wdt member");
            }

            problems.AddRange(root.EnumerateObject().Select(p => p.Name).Except(["event", "timestamp", "virtio-wdt"]).Select(m => $"{name}: top-level member {m}"));
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(problems, Is.Empty);
            Assert.That(lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("event").GetString()), Is.EqualTo(new[] { "VIRTIO_WDT_DEADLINE", "VIRTIO_WDT_CONTINUE", "VIRTIO_WDT_GUEST_RESET", "VIRTIO_WDT_EVENTS_LOST" }));
            Assert.That(JsonDocument.Parse(continued.Json).RootElement.GetProperty("virtio-wdt").GetProperty("policy").GetString(), Is.EqualTo("continue"));
        }
    }

    private static IEnumerable<WatchdogEvent> SampleEvents()
    {
        yield return new GuestPanickedEvent { DeviceId = "d", Sequence = 1, VmRunTime = default, HostTime = s_time, Source = WatchdogEventSource.EventRecord, CodeFormat = PanicCodeFormat.HyperVCrash, Codes = [1, 2, 3, 4, 5], Message = "m", VcpuId = 1 };
        yield return new GuestPanickedEvent { DeviceId = "d", Sequence = 2, VmRunTime = default, HostTime = s_time, Source = WatchdogEventSource.ConfigField };
        yield return new GuestPanickedEvent { DeviceId = "d", Sequence = 3, VmRunTime = default, HostTime = s_time, Source = WatchdogEventSource.EventRecord, CodeFormat = PanicCodeFormat.Generic, Codes = [7] };
        yield return new GuestCrashLoadedEvent { DeviceId = "d", Sequence = 4, VmRunTime = default, HostTime = s_time, Source = WatchdogEventSource.EventRecord, CodeFormat = PanicCodeFormat.WindowsBugcheck, Codes = [0x9F] };
        yield return new GuestShutdownEvent { DeviceId = "d", Sequence = 5, VmRunTime = default, HostTime = s_time, Source = WatchdogEventSource.ConfigField };
        yield return new WatchdogExpiredEvent { DeviceId = "d", Sequence = 6, VmRunTime = default, HostTime = s_time, Timeout = TimeSpan.FromSeconds(3) };
        yield return new WatchdogArmedEvent { DeviceId = "d", Sequence = 7, VmRunTime = default, HostTime = s_time, Timeout = TimeSpan.FromSeconds(3) };
        yield return new WatchdogPretimeoutEvent { DeviceId = "d", Sequence = 8, VmRunTime = default, HostTime = s_time, Timeout = TimeSpan.FromSeconds(3), Pretimeout = TimeSpan.FromSeconds(1), TimeLeft = TimeSpan.FromSeconds(1) };
        yield return new WatchdogStoppedEvent { DeviceId = "d", Sequence = 9, VmRunTime = default, HostTime = s_time, Reason = WatchdogStopReason.DriverStop };
        yield return new GuestProtocolErrorEvent { DeviceId = "d", Sequence = 10, VmRunTime = default, HostTime = s_time, Error = WatchdogProtocolError.MalformedRecord, QueueIndex = 1, Detail = "x" };
        yield return new DriverResetEvent { DeviceId = "d", Sequence = 11, VmRunTime = default, HostTime = s_time, WatchdogKeptRunning = true };
        yield return new VcpuStalledEvent { DeviceId = "d", Sequence = 12, VmRunTime = default, HostTime = s_time, Vcpu = 1, VcpuId = 1, StalledFor = TimeSpan.FromSeconds(10), Timeout = TimeSpan.FromSeconds(10), SecondStage = TimeSpan.FromSeconds(5) };
        yield return new VcpuRecoveredEvent { DeviceId = "d", Sequence = 13, VmRunTime = default, HostTime = s_time, Vcpu = 1, VcpuId = 1, SinceStall = TimeSpan.FromSeconds(2) };
        yield return new VcpuStallExpiredEvent { DeviceId = "d", Sequence = 14, VmRunTime = default, HostTime = s_time, Vcpu = 1, VcpuId = 1, SinceStall = TimeSpan.FromSeconds(5), StalledFor = TimeSpan.FromSeconds(10) };
    }
}
