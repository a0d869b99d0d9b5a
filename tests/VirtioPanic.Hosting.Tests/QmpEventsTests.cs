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
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("event").GetString(), Is.EqualTo("GUEST_PANICKED"));
            Assert.That(data.GetProperty("action").GetString(), Is.EqualTo("poweroff"));
            Assert.That(data.GetProperty("info").GetProperty("type").GetString(), Is.EqualTo("hyper-v"));
            Assert.That(data.GetProperty("info").GetProperty("arg1").GetUInt64(), Is.EqualTo(0x9Fu));
            Assert.That(data.GetProperty("info").GetProperty("arg5").GetUInt64(), Is.Zero);
            Assert.That(data.GetProperty("device").GetString(), Is.EqualTo("vm1-wdt"));
            Assert.That(data.GetProperty("sequence").GetInt64(), Is.EqualTo(7));
            Assert.That(data.GetProperty("vcpu").GetUInt32(), Is.EqualTo(2u));
            Assert.That(data.GetProperty("policy").GetString(), Is.EqualTo("destroy"));
            Assert.That(data.GetProperty("message").GetString(), Is.EqualTo("bugcheck"));
            Assert.That(root.GetProperty("timestamp").GetProperty("seconds").GetInt64(), Is.EqualTo(s_time.ToUnixTimeSeconds()));
            Assert.That(root.GetProperty("timestamp").GetProperty("microseconds").GetInt64(), Is.EqualTo(123_000));
        });
    }

    [TestCase("preserve", "pause")]
    [TestCase("log-only", "run")]
    [TestCase("grace", "run")]
    [TestCase("coredump-destroy", "poweroff")]
    [TestCase("restart", "reset")]
    public void GuestPanicked_ActionMapsToQemusGuestPanicAction(string policy, string qmp) =>
        Assert.That(QmpEvents.QmpAction(WatchdogEventKind.GuestPanicked, policy), Is.EqualTo(qmp));

    [TestCase("reset", "reset")]
    [TestCase("shutdown", "shutdown")]
    [TestCase("poweroff", "poweroff")]
    [TestCase("pause", "pause")]
    [TestCase("dump", "pause")]
    [TestCase("inject-nmi", "inject-nmi")]
    [TestCase("none", "none")]
    public void Watchdog_ActionMapsToQemusWatchdogAction(string policy, string qmp) =>
        Assert.That(QmpEvents.QmpAction(WatchdogEventKind.Expired, policy), Is.EqualTo(qmp));

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
            Assert.That(s.GetProperty("data").TryGetProperty("action", out _), Is.False);
        });
    }
}
