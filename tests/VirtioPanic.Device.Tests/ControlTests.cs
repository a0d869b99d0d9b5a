using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;

namespace VirtioPanic.Device.Tests;

// Control requests on watchdogq with VIRTIO_WDT_F_CONTROL (spec §6.3).
public sealed class ControlTests
{
    private const ushort GetStatus = 1;
    private const ushort Start = 2;
    private const ushort Stop = 3;
    private const ushort Keepalive = 4;
    private const ushort SetTimeout = 5;
    private const ushort SetPretimeout = 6;
    private const ushort SetNowayout = 7;

    private const ushort Ok = 0;
    private const ushort Unsupported = 1;
    private const ushort Invalid = 2;
    private const ushort Denied = 3;
    private const ushort NotArmed = 4;

    private static WatchdogRig Rig(WatchdogFeatures features = WatchdogFeatures.Control | WatchdogFeatures.Pretimeout) => WatchdogRig.Started(features);

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_10_Start_ArmsWithRequestedTimeout_ResponseReflectsState()
    {
        using WatchdogRig rig = Rig();

        ControlResult result = rig.Control(Start, 5_000);

        Assert.Multiple(() =>
        {
            Assert.That(result.Status, Is.EqualTo(Ok));
            Assert.That(result.UsedLength, Is.EqualTo(16u));
            Assert.That(result.Armed, Is.True);
            Assert.That(result.TimeoutMs, Is.EqualTo(5_000u));
            Assert.That(result.TimeLeftMs, Is.EqualTo(5_000u));
            Assert.That(rig.Drain<WatchdogArmedEvent>().Single().ByHeartbeat, Is.False);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_10_GetStatus_ReportsTimeLeftInRunTime()
    {
        using WatchdogRig rig = Rig();
        rig.Control(Start, 10_000);
        rig.Time.Advance(TimeSpan.FromMilliseconds(3_500));

        ControlResult result = rig.Control(GetStatus);

        Assert.Multiple(() =>
        {
            Assert.That(result.Status, Is.EqualTo(Ok));
            Assert.That(result.TimeLeftMs, Is.EqualTo(6_500u));
            Assert.That(result.Armed, Is.True);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_10_StopAndKeepaliveAndSetTimeout_BehaveAsSpecified()
    {
        using WatchdogRig rig = Rig();
        rig.Control(Start, 10_000);
        rig.Time.Advance(TimeSpan.FromSeconds(4));

        ControlResult keepalive = rig.Control(Keepalive);
        Assert.That(keepalive.TimeLeftMs, Is.EqualTo(10_000u), "keepalive restarts the countdown");

        rig.Time.Advance(TimeSpan.FromSeconds(4));
        ControlResult setTimeout = rig.Control(SetTimeout, 30_000);
        Assert.Multiple(() =>
        {
            Assert.That(setTimeout.TimeoutMs, Is.EqualTo(30_000u));
            Assert.That(setTimeout.TimeLeftMs, Is.EqualTo(30_000u), "set_timeout on an armed watchdog restarts the countdown");
        });

        ControlResult stop = rig.Control(Stop);
        Assert.Multiple(() =>
        {
            Assert.That(stop.Status, Is.EqualTo(Ok));
            Assert.That(stop.Armed, Is.False);
            Assert.That(stop.TimeLeftMs, Is.EqualTo(0u));
            Assert.That(rig.Drain<WatchdogStoppedEvent>().Single().Reason, Is.EqualTo(WatchdogStopReason.DriverStop));
        });

        rig.Time.Advance(TimeSpan.FromMinutes(5));
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty, "a stopped watchdog does not expire");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_11_TimeoutsOutOfBounds_AreInvalidAndChangeNothing()
    {
        using WatchdogRig rig = Rig();

        ControlResult below = rig.Control(Start, 999);
        ControlResult above = rig.Control(SetTimeout, 3_600_001);
        rig.Control(Start, 10_000);
        ControlResult pretimeoutTooBig = rig.Control(SetPretimeout, 10_000);

        Assert.Multiple(() =>
        {
            Assert.That(below.Status, Is.EqualTo(Invalid));
            Assert.That(below.Armed, Is.False, "an invalid START does not arm");
            Assert.That(above.Status, Is.EqualTo(Invalid));
            Assert.That(above.TimeoutMs, Is.EqualTo(20_000u), "unchanged");
            Assert.That(pretimeoutTooBig.Status, Is.EqualTo(Invalid));
            Assert.That(pretimeoutTooBig.PretimeoutMs, Is.EqualTo(0u));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_11_RequestShorterThan16Bytes_IsInvalid()
    {
        using WatchdogRig rig = Rig();

        ControlResult result = rig.Control(Start, 5_000, requestLength: 8);

        Assert.Multiple(() =>
        {
            Assert.That(result.Status, Is.EqualTo(Invalid));
            Assert.That(result.UsedLength, Is.EqualTo(16u));
            Assert.That(result.Armed, Is.False);
            Assert.That(rig.Drain<GuestProtocolErrorEvent>().Single().Error, Is.EqualTo(WatchdogProtocolError.MalformedControl));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_12_StopWithNowayout_IsDeniedAndNowayoutSticks()
    {
        using WatchdogRig rig = Rig();
        rig.Control(Start, 10_000);
        rig.Control(SetNowayout);

        ControlResult stop = rig.Control(Stop);

        Assert.Multiple(() =>
        {
            Assert.That(stop.Status, Is.EqualTo(Denied));
            Assert.That(stop.Armed, Is.True);
            Assert.That(stop.Nowayout, Is.True);
            Assert.That(rig.Drain<WatchdogStoppedEvent>(), Is.Empty);
        });

        rig.Time.Advance(TimeSpan.FromSeconds(10));
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1), "still running after the denied STOP");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_13_KeepaliveWhileDisarmed_IsNotArmed()
    {
        using WatchdogRig rig = Rig();

        ControlResult result = rig.Control(Keepalive);

        Assert.Multiple(() =>
        {
            Assert.That(result.Status, Is.EqualTo(NotArmed));
            Assert.That(result.Armed, Is.False);
            Assert.That(rig.DrainEvents().OfType<WatchdogArmedEvent>(), Is.Empty);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_14_UnknownCommandAndPretimeoutWithoutFeature_AreUnsupported()
    {
        using WatchdogRig rig = Rig(WatchdogFeatures.Control);

        ControlResult unknown = rig.Control(99);
        ControlResult pretimeout = rig.Control(SetPretimeout, 1_000);

        Assert.Multiple(() =>
        {
            Assert.That(unknown.Status, Is.EqualTo(Unsupported));
            Assert.That(pretimeout.Status, Is.EqualTo(Unsupported));
            Assert.That(pretimeout.PretimeoutMs, Is.EqualTo(0u));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_15_ResponseShorterThan16Bytes_NothingExecutedUsedLengthZero()
    {
        using WatchdogRig rig = Rig();
        ulong request = rig.Buffer(16);
        rig.Memory.TryWrite(request, [2, 0, 0, 0, 0x88, 0x13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // START 5000 ms
        rig.PostChain(0, new DriverBuffer(request, 16, false), new DriverBuffer(rig.Buffer(8), 8, true));

        rig.Device.Notify(0);

        Assert.Multiple(() =>
        {
            Assert.That(rig.TakeUsed(0).Length, Is.EqualTo(0u));
            Assert.That(rig.Device.GetStatus().Armed, Is.False, "START was not executed");
            Assert.That(rig.Drain<GuestProtocolErrorEvent>().Single().Error, Is.EqualTo(WatchdogProtocolError.MalformedControl));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_16_SetTimeoutNotAbovePretimeout_ClearsPretimeout()
    {
        using WatchdogRig rig = Rig();
        rig.Control(Start, 10_000);
        Assert.That(rig.Control(SetPretimeout, 4_000).PretimeoutMs, Is.EqualTo(4_000u));

        ControlResult result = rig.Control(SetTimeout, 4_000);

        Assert.Multiple(() =>
        {
            Assert.That(result.Status, Is.EqualTo(Ok));
            Assert.That(result.TimeoutMs, Is.EqualTo(4_000u));
            Assert.That(result.PretimeoutMs, Is.EqualTo(0u));
        });
    }

    [Test]
    public void Control_HeartbeatStillArmsWhenControlIsNegotiated()
    {
        using WatchdogRig rig = Rig();

        Assert.That(rig.Heartbeat(), Is.EqualTo(1));
        Assert.That(rig.Control(GetStatus).Armed, Is.True);
    }
}
