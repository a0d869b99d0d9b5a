using VirtioPanic.Device.Tests.Rig;

namespace VirtioPanic.Device.Tests;

// What a device reset keeps and forgets (spec §6.8).
public sealed class ResetTests
{
    [Test]
    [Category("Conformance")]
    public void WDT_DEV_30_CommittedButUnnotifiedRecord_ReportedAtResetWithoutWriting()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Events);
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 256);
        rig.Commit(posted, RecordSpec.Panic("notification lost"), notify: false);
        rig.DrainEvents();

        rig.ResetDevice();

        List<WatchdogEvent> events = rig.DrainEvents();
        GuestPanickedEvent panic = events.OfType<GuestPanickedEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(panic.Message, Is.EqualTo("notification lost"));
            Assert.That(panic.Source, Is.EqualTo(WatchdogEventSource.EventRecordAtReset));
            Assert.That(rig.ReadStatus(posted).Status, Is.EqualTo(0), "the buffer is not written at reset");
            Assert.That(events.OfType<DriverResetEvent>().Count(), Is.EqualTo(1));
            Assert.That(rig.Device.HeldRecordCount, Is.EqualTo(0), "held buffers forgotten");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_30_UncommittedHeldBuffers_ForgottenSilently()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Events);
        rig.PostRecordBuffer(recordLength: 256);
        rig.PostRecordBuffer(recordLength: 256);

        rig.ResetDevice();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Device.HeldRecordCount, Is.EqualTo(0));
            Assert.That(rig.Drain<GuestReportEvent>(), Is.Empty);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_30_PendingNotice_ForgottenAtReset()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Control | WatchdogFeatures.Pretimeout);
        rig.Control(2, 10_000);
        rig.Control(7);
        rig.Control(6, 5_000);
        rig.Time.Advance(TimeSpan.FromSeconds(6));

        rig.ResetDevice();
        rig.Activate(WatchdogFeatures.Control | WatchdogFeatures.Pretimeout);
        rig.PostNoticeBuffer();

        Assert.That(rig.TryTakeUsed(2, out _), Is.False);
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_31_ResetWithoutNowayout_DisarmsAndRestoresDefaults()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Control | WatchdogFeatures.Pretimeout);
        rig.Control(2, 60_000);
        rig.Control(6, 10_000);
        rig.DrainEvents();

        rig.ResetDevice();

        WatchdogDeviceStatus status = rig.Device.GetStatus();
        List<WatchdogEvent> events = rig.DrainEvents();
        Assert.Multiple(() =>
        {
            Assert.That(status.Armed, Is.False);
            Assert.That(status.Timeout, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(status.Pretimeout, Is.EqualTo(TimeSpan.Zero));
            Assert.That(status.Nowayout, Is.False);
            Assert.That(status.DriverBound, Is.False);
            Assert.That(events.OfType<WatchdogStoppedEvent>().Single().Reason, Is.EqualTo(WatchdogStopReason.DeviceReset));
            Assert.That(events.OfType<DriverResetEvent>().Single().WatchdogKeptRunning, Is.False);
        });

        rig.Time.Advance(TimeSpan.FromMinutes(5));
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty);
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_31_ResetWithNowayout_KeepsRunningAndExpiresOnTime()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Control);
        rig.Control(2, 30_000);
        rig.Control(7);
        rig.Time.Advance(TimeSpan.FromSeconds(10));

        rig.ResetDevice();

        WatchdogDeviceStatus status = rig.Device.GetStatus();
        Assert.Multiple(() =>
        {
            Assert.That(status.Armed, Is.True);
            Assert.That(status.Nowayout, Is.True);
            Assert.That(status.Timeout, Is.EqualTo(TimeSpan.FromSeconds(30)));
            Assert.That(status.TimeLeft, Is.EqualTo(TimeSpan.FromSeconds(20)), "same deadline");
            Assert.That(rig.Drain<DriverResetEvent>().Single().WatchdogKeptRunning, Is.True);
        });

        // A new driver (say, a crash kernel) finds it armed and can keep it alive with heartbeats.
        rig.Activate(WatchdogFeatures.Control);
        Assert.That(rig.Control(1).Armed, Is.True);
        rig.Time.Advance(TimeSpan.FromSeconds(30));
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_31_VmResetByHost_StopsEvenANowayoutWatchdog()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Control);
        rig.Control(2, 30_000);
        rig.Control(7);
        rig.DrainEvents();

        rig.Device.OnVmReset(WatchdogBootReason.Watchdog);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Device.GetStatus().Armed, Is.False);
            Assert.That(rig.Device.GetStatus().Nowayout, Is.False);
            Assert.That(rig.Drain<WatchdogStoppedEvent>().Single().Reason, Is.EqualTo(WatchdogStopReason.VmReset));
        });
    }

    [Test]
    public void Reset_BeforeDriverOk_ReportsNoDriverReset()
    {
        using var rig = new WatchdogRig();

        rig.Device.Reset();

        Assert.That(rig.DrainEvents(), Is.Empty);
    }
}
