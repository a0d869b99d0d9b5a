using VirtioPanic.Device.Tests.Rig;

namespace VirtioPanic.Device.Tests;

// The minimal panic path: panic_events in the configuration space (spec §6.6).
public sealed class PanicConfigTests
{
    [Test]
    [Category("Conformance")]
    public void WDT_DEV_21_PanickedWrite_ReportedBeforeTheWriteReturns_WithoutAnyQueue()
    {
        using var rig = new WatchdogRig(); // no feature negotiation, no DRIVER_OK, no queue

        rig.WriteConfig32(0x08, 1);

        Assert.That(rig.Device.Events.TryRead(out WatchdogEvent? evt), Is.True, "already in the channel when WriteConfig returned");
        var panicked = (GuestPanickedEvent)evt!;
        Assert.Multiple(() =>
        {
            Assert.That(panicked.Source, Is.EqualTo(WatchdogEventSource.ConfigField));
            Assert.That(panicked.Message, Is.Null);
            Assert.That(panicked.Codes, Is.Empty);
            Assert.That(panicked.VcpuId, Is.Null);
            Assert.That(panicked.DeviceId, Is.EqualTo("watchdog0"));
            Assert.That(rig.Device.GetStatus().DriverBound, Is.False);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_21_PanicFromMinimalPath_WithRichQueueNeverSetUp()
    {
        using var rig = new WatchdogRig();
        rig.Activate(WatchdogFeatures.All, eventQueue: false, noticeQueue: false);
        rig.Heartbeat();

        rig.WriteConfig32(0x08, 1);

        Assert.That(rig.Drain<GuestPanickedEvent>().Single().Source, Is.EqualTo(WatchdogEventSource.ConfigField));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_21_FirstSetBitWins_InPvpanicOrder()
    {
        using var rig = new WatchdogRig();

        rig.WriteConfig32(0x08, 0x1 | 0x2 | 0x4);
        rig.WriteConfig32(0x08, 0x2 | 0x4);
        rig.WriteConfig32(0x08, 0x4);

        Assert.That(rig.DrainEvents().Select(e => e.Kind), Is.EqualTo(new[] { WatchdogEventKind.GuestPanicked, WatchdogEventKind.GuestCrashLoaded, WatchdogEventKind.GuestShutdown }));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_21_OneAndTwoByteWrites_AreAccepted()
    {
        using var rig = new WatchdogRig();

        rig.Device.WriteConfig(0x08, [0x02]);
        rig.Device.WriteConfig(0x08, [0x01, 0x00]);

        Assert.That(rig.DrainEvents().Select(e => e.Kind), Is.EqualTo(new[] { WatchdogEventKind.GuestCrashLoaded, WatchdogEventKind.GuestPanicked }));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_21_UnknownBits_IgnoredAndCounted()
    {
        using var rig = new WatchdogRig();

        rig.WriteConfig32(0x08, 0x80);
        rig.WriteConfig32(0x08, 0x80 | 0x1);

        List<WatchdogEvent> events = rig.DrainEvents();
        Assert.Multiple(() =>
        {
            Assert.That(events.OfType<GuestPanickedEvent>().Count(), Is.EqualTo(1));
            Assert.That(events.OfType<GuestProtocolErrorEvent>().Select(e => e.Error), Is.All.EqualTo(WatchdogProtocolError.UnknownPanicEvents));
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.EqualTo(2));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_21_WorksAfterDeviceNeedsReset()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.PanicConfig);
        rig.PostChain(0, new GuestDriver.Rings.DriverBuffer(rig.Buffer(16), 16, DeviceWritable: false));
        rig.Device.Notify(0);
        Assert.That(rig.Device.GetStatus().NeedsReset, Is.True);

        rig.WriteConfig32(0x08, 1);

        Assert.That(rig.Drain<GuestPanickedEvent>(), Has.Count.EqualTo(1));
    }

    [Test]
    public void PanicConfig_NotOffered_WritesAreIgnored()
    {
        using var rig = new WatchdogRig(new WatchdogDeviceOptions { Features = WatchdogFeatures.None });

        rig.WriteConfig32(0x08, 1);

        Assert.That(rig.Drain<GuestPanickedEvent>(), Is.Empty);
    }
}
