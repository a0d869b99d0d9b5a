using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Watchdog;

namespace VirtioPanic.GuestDriver.Tests.Watchdog;

// The baseline heartbeat protocol end to end over PCI, with the driver that speaks nothing else.
public sealed class BaselineWatchdogDriverTests
{
    [Test]
    public void Heartbeat_DeviceWritesOne_AndTheFirstOneArmsTheWatchdog()
    {
        using var rig = new WatchdogRig();

        (bool answered, long heartbeats) = rig.Run(() =>
        {
            BaselineWatchdogDriver driver = BaselineWatchdogDriver.Probe(rig.VirtioDevice);
            return (driver.Heartbeat(), driver.Heartbeats);
        });

        WatchdogDeviceStatus status = rig.Device.GetStatus();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(answered, Is.True);
            Assert.That(heartbeats, Is.EqualTo(1));
            Assert.That(status.NegotiatedFeatures, Is.EqualTo(WatchdogFeatures.None), "baseline: no device feature");
            Assert.That(status.Armed, Is.True);
            Assert.That(status.Timeout, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(rig.EventsOf<WatchdogArmedEvent>().Single().ByHeartbeat, Is.True);
            Assert.That(rig.Spy.ChainsOn(0).Single().Buffers, Has.Length.EqualTo(1));
        }
    }

    [Test]
    public void Heartbeats_Every15Seconds_KeepA20SecondWatchdog_ThenStoppingBitesExactlyAtTheTimeout()
    {
        using var rig = new WatchdogRig();
        BaselineWatchdogDriver driver = rig.Run(() =>
        {
            BaselineWatchdogDriver d = BaselineWatchdogDriver.Probe(rig.VirtioDevice);
            d.Start();
            return d;
        });

        rig.Advance(TimeSpan.FromSeconds(100));
        bool expiredWhileBeating = rig.EventsOf<WatchdogExpiredEvent>().Count > 0;
        rig.Guest.Run(driver.StopHeartbeats);   // last heartbeat at t = 90 s
        rig.Advance(TimeSpan.FromSeconds(9));
        bool expiredEarly = rig.EventsOf<WatchdogExpiredEvent>().Count > 0;
        rig.Advance(TimeSpan.FromSeconds(1));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(expiredWhileBeating, Is.False);
            Assert.That(driver.Heartbeats, Is.EqualTo(7), "t = 0, 15, ..., 90");
            Assert.That(driver.Faults, Is.Zero);
            Assert.That(expiredEarly, Is.False, "not before the deadline");
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>(), Has.Count.EqualTo(1), "exactly 20 s after the last heartbeat");
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>()[0].VmRunTime, Is.EqualTo(TimeSpan.FromSeconds(110)));
        }
    }
}
