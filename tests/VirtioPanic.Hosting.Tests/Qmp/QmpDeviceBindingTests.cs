using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Qmp;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests.Qmp;

// QmpVmControl.FollowDevice against a scripted monitor: the VM's run state is the device's.
public sealed class QmpDeviceBindingTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(10);

    private sealed class Bound : IAsyncDisposable
    {
        private readonly TempDirectory _directory = new();
        private readonly FakeQmpMonitor _monitor;

        private Bound(FakeQmpMonitor monitor, QmpVmControl control, GuestRig rig)
        {
            _monitor = monitor;
            Control = control;
            Rig = rig;
        }

        internal QmpVmControl Control { get; }

        internal GuestRig Rig { get; }

        internal FakeQmpMonitor.Connection Connection { get; private set; } = null!;

        internal QmpDeviceBinding Binding { get; private set; } = null!;

        internal static async Task<Bound> StartAsync(bool running = true)
        {
            var directory = new TempDirectory();
            var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
            Task<FakeQmpMonitor.Connection> accepted = monitor.AcceptAsync();
            var control = new QmpVmControl(new QmpVmControlOptions { SocketPath = monitor.SocketPath, ReconnectDelay = TimeSpan.FromMilliseconds(50) });
            var rig = new GuestRig(new FakeTimeProvider(DateTimeOffset.UnixEpoch));
            var bound = new Bound(monitor, control, rig);
            bound.Connection = await accepted;
            Assert.That(await bound.Connection.AnswerAsync(running ? """{"running": true, "status": "running"}""" : """{"running": false, "status": "paused"}"""), Is.EqualTo("query-status"));
            Assert.That(await control.WaitConnectedAsync(s_timeout), Is.True);
            bound.Binding = (QmpDeviceBinding)control.FollowDevice(rig.Device);
            return bound;
        }

        public async ValueTask DisposeAsync()
        {
            Binding.Dispose();
            await Control.DisposeAsync();
            Connection.Dispose();
            _monitor.Dispose();
            Rig.Dispose();
            _directory.Dispose();
        }
    }

    [Test]
    public async Task VmPausedAtConnect_PausesTheDevice_StopAndResumeEventsFollow()
    {
        await using Bound bound = await Bound.StartAsync(running: false);
        WatchdogDevice device = bound.Rig.Device;
        bool pausedAtBind = device.GetStatus().Paused;

        await bound.Connection.SendAsync("""{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 0}}""");
        bool resumed = SpinWait.SpinUntil(() => !device.GetStatus().Paused, s_timeout);
        await bound.Connection.SendAsync("""{"event": "STOP", "timestamp": {"seconds": 2, "microseconds": 0}}""");
        bool pausedAgain = SpinWait.SpinUntil(() => device.GetStatus().Paused, s_timeout);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(pausedAtBind, Is.True, "query-status said paused");
            Assert.That(resumed, Is.True, "RESUME");
            Assert.That(pausedAgain, Is.True, "STOP");
            Assert.That(bound.Control.StopEvents, Is.EqualTo(1));
        }
    }

    // A guest that shut down under -no-shutdown: SHUTDOWN (QEMU sends STOP after it, which may be
    // missing when QEMU exits instead) stops the watchdog's clock; the armed watchdog survives it.
    [Test]
    public async Task ShutdownEvent_PausesTheArmedWatchdog_AndCountsAsAVmStop()
    {
        await using Bound bound = await Bound.StartAsync();
        GuestRig rig = bound.Rig;
        rig.Boot();
        rig.Heartbeat();
        long stopsBefore = bound.Control.StopEvents;

        await bound.Connection.SendAsync("""{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, "timestamp": {"seconds": 1, "microseconds": 0}}""");
        bool paused = SpinWait.SpinUntil(() => rig.Device.GetStatus().Paused, s_timeout);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(paused, Is.True);
            Assert.That(rig.Device.GetStatus().Armed, Is.True, "a VM stop never disarms");
            Assert.That(bound.Control.StopEvents, Is.EqualTo(stopsBefore + 1), "a ring stop after it is not a driver reset");
        }
    }

    [Test]
    public async Task ResetEvent_IsAVmReset_StopsTheWatchdog_KeepsTheBootReason()
    {
        await using Bound bound = await Bound.StartAsync();
        GuestRig rig = bound.Rig;
        rig.Boot();
        rig.Heartbeat();
        rig.Device.SetBootReason(WatchdogBootReason.Watchdog);
        Assert.That(rig.Device.GetStatus().Armed, Is.True);

        await bound.Connection.SendAsync("""{"event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}, "timestamp": {"seconds": 1, "microseconds": 0}}""");
        bool disarmed = SpinWait.SpinUntil(() => !rig.Device.GetStatus().Armed, s_timeout);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(disarmed, Is.True);
            Assert.That(rig.Device.GetStatus().BootReason, Is.EqualTo(WatchdogBootReason.Watchdog));
        }
    }

    // The rings stopped and the VMM says the VM runs, with no STOP: the driver reset the device.
    [Test]
    public async Task RingStopWhileTheVmRuns_EndsTheSuspensionAsADriverReset()
    {
        await using Bound bound = await Bound.StartAsync();
        GuestRig rig = bound.Rig;
        rig.Boot();
        rig.Heartbeat();

        Assert.That(rig.Device.Suspend(), Is.True);
        Assert.That(await bound.Connection.AnswerAsync("""{"running": true, "status": "running"}"""), Is.EqualTo("query-status"));
        await bound.Binding.LastDecision.WaitAsync(s_timeout);
        WatchdogDeviceStatus status = rig.Device.GetStatus();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status.Suspended, Is.False, "ended");
            Assert.That(status.Armed, Is.False, "a driver reset disarms (no NOWAYOUT)");
            Assert.That(status.Paused, Is.False, "the VM runs: the clock runs");
        }
    }

    // A VM stop: QEMU stops the rings, then sends STOP, then answers our query (running: false).
    [TestCase(true, TestName = "RingStopThenStopEvent_KeepsTheSuspension_EvenIfTheVmRunsAgainByTheReply")]
    [TestCase(false, TestName = "RingStopWithTheVmNotRunning_KeepsTheSuspension")]
    public async Task RingStopOfAStoppedVm_KeepsTheSuspension(bool stopEvent)
    {
        await using Bound bound = await Bound.StartAsync();
        GuestRig rig = bound.Rig;
        rig.Boot();
        rig.Heartbeat();
        TimeSpan? left = rig.Device.GetStatus().TimeLeft;

        Assert.That(rig.Device.Suspend(), Is.True);
        if (stopEvent)
        {
            await bound.Connection.SendAsync("""{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}}""");
        }

        // With a STOP before it, even a reply that says running (a `cont` raced in) is no driver reset.
        Assert.That(await bound.Connection.AnswerAsync(stopEvent ? """{"running": true, "status": "running"}""" : """{"running": false, "status": "paused"}"""), Is.EqualTo("query-status"));
        await bound.Binding.LastDecision.WaitAsync(s_timeout);
        rig.Time.Advance(TimeSpan.FromMinutes(1));
        WatchdogDeviceStatus status = rig.Device.GetStatus();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status.Suspended, Is.True);
            Assert.That(status.Armed && !status.Expired, Is.True, "armed, and a minute later still not expired");
            Assert.That(status.TimeLeft, Is.EqualTo(left));
        }
    }

    [Test]
    public async Task MonitorGone_LeavesTheSuspensionToTheBackEnd()
    {
        await using Bound bound = await Bound.StartAsync();
        GuestRig rig = bound.Rig;
        rig.Boot();
        rig.Heartbeat();
        bound.Connection.Dispose();   // the VMM's monitor went away
        Assert.That(SpinWait.SpinUntil(() => !bound.Control.IsConnected, s_timeout), Is.True);

        Assert.That(rig.Device.Suspend(), Is.True);
        await bound.Binding.LastDecision.WaitAsync(s_timeout);

        Assert.That(rig.Device.GetStatus().Suspended, Is.True, "nobody could say: the ring restart decides");
    }
}
