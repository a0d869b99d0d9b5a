using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Watchdog;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.GuestDriver.Tests.Watchdog;

// A VM with a bound, armed watchdog is snapshotted with record buffers held by the device; the
// source keeps running past the snapshot (the watchdog bites there); the snapshot is restored
// (transport and RAM first, then the device's own state) and the guest carries on from the
// snapshot point: time left as saved, held record buffers still usable.
public sealed class WatchdogSnapshotTests
{
    [Test]
    public void Snapshot_ArmedWithHeldRecords_RestoredGuestKeepsItsTimeLeftAndItsRecordBuffers()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe();
        rig.Run(() => (driver.SetTimeout(TimeSpan.FromSeconds(30)), driver.Start()));
        rig.Advance(TimeSpan.FromSeconds(10));

        rig.Device.Pause();
        rig.Guest.WaitForQuiescence();
        MachineSnapshot machine = rig.Machine.SaveSnapshot();
        byte[] device = rig.Device.SaveState();

        // The source goes on and the watchdog bites there.
        rig.Device.Resume();
        rig.Advance(TimeSpan.FromSeconds(20));
        int expiriesAtSource = rig.EventsOf<WatchdogExpiredEvent>().Count;
        int resetsAtSource = rig.EventsOf<DriverResetEvent>().Count;

        // Restore: transport and RAM first (this re-activates the device), then the device.
        SnapshotStatus status = rig.Machine.RestoreSnapshot(machine);
        SnapshotStatus deviceStatus = rig.Device.RestoreState(device);
        int resetsAfterRestore = rig.EventsOf<DriverResetEvent>().Count;
        rig.Device.Resume();
        TimeSpan? left = rig.Run(driver.GetTimeLeft);
        PanicReportPath path = rig.Run(() => driver.Panic(new PanicReport { Message = "after restore" }));
        rig.Advance(TimeSpan.FromSeconds(19));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(expiriesAtSource, Is.EqualTo(1));
            Assert.That(status, Is.EqualTo(SnapshotStatus.Ok));
            Assert.That(deviceStatus, Is.EqualTo(SnapshotStatus.Ok));
            Assert.That(left, Is.EqualTo(TimeSpan.FromSeconds(20)), "the countdown as it was at the snapshot");
            Assert.That(path, Is.EqualTo(PanicReportPath.EventRecord), "a record buffer held at the snapshot still carries a report");
            Assert.That(rig.EventsOf<GuestPanickedEvent>().Single().Message, Is.EqualTo("after restore"));
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>(), Has.Count.EqualTo(1), "no bite in the restored VM before its deadline");
            Assert.That(rig.Device.GetStatus().Armed, Is.True);
            Assert.That(resetsAfterRestore, Is.EqualTo(resetsAtSource), "a restore quiesces the device; it is not a guest reset");
        }
    }
}
