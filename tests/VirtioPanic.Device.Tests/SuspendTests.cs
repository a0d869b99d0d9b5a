using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Device.Tests;

// A stop of the rings that may be a VM stop or a driver reset (spec §7.3, WDT-DEV-39): the device
// keeps its session, its clock stops, and exactly one of TryResume or Reset ends it.
public sealed class SuspendTests
{
    private const byte Accepted = 1;
    private static readonly TimeSpan s_tick = TimeSpan.FromTicks(1);

    private static WatchdogRig Rig() => WatchdogRig.Started(WatchdogFeatures.Events | WatchdogFeatures.LogTail, new WatchdogDeviceOptions { ResumeGrace = TimeSpan.Zero });

    // The rings restart where they stopped: the rig's queues keep their positions.
    private static TestDeviceContext SameRings(WatchdogRig rig) => new(rig.Memory, rig.Context!.NegotiatedFeatures, rig.Queues);

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_39_Suspended_ArmedWatchdogNeverExpires_ResumeContinuesTheCountdown()
    {
        using WatchdogRig rig = Rig();
        rig.Heartbeat();
        rig.Time.Advance(TimeSpan.FromSeconds(15));
        rig.DrainEvents();

        Assert.That(rig.Device.Suspend(), Is.True);
        WatchdogDeviceStatus suspended = rig.Device.GetStatus();
        rig.Time.Advance(TimeSpan.FromSeconds(60));   // three timeouts
        List<WatchdogEvent> whileSuspended = rig.DrainEvents();

        Assert.That(rig.Device.TryResume(SameRings(rig)), Is.True);
        WatchdogDeviceStatus resumed = rig.Device.GetStatus();
        rig.Time.Advance(TimeSpan.FromSeconds(5) - s_tick);
        List<WatchdogExpiredEvent> early = rig.Drain<WatchdogExpiredEvent>();
        rig.Time.Advance(s_tick);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(suspended.Suspended && suspended.Paused && suspended.Armed, Is.True, "suspended, clock stopped, still armed");
            Assert.That(suspended.DriverBound, Is.False);
            Assert.That(suspended.TimeLeft, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(whileSuspended, Is.Empty, "no expiry, no reset event while suspended");
            Assert.That(resumed.Suspended || resumed.Paused, Is.False);
            Assert.That(resumed.DriverBound && resumed.Armed, Is.True);
            Assert.That(early, Is.Empty, "the remaining 5 s count only after the resume");
            Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));
        }
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_39_HeldRecordBuffer_SurvivesSuspendAndResume_ThenCarriesARecord()
    {
        using WatchdogRig rig = Rig();
        PostedRecord posted = rig.PostRecordBuffer();
        Assert.That(rig.Device.HeldRecordCount, Is.EqualTo(1));

        Assert.That(rig.Device.Suspend(), Is.True);
        int heldWhileSuspended = rig.Device.HeldRecordCount;
        Assert.That(rig.Device.TryResume(SameRings(rig)), Is.True);
        int heldAfter = rig.Device.HeldRecordCount;
        rig.Commit(posted, RecordSpec.Panic("after cont"));
        GuestPanickedEvent panic = rig.Drain<GuestPanickedEvent>().Single();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(heldWhileSuspended, Is.Zero, "kept by guest address, not as live slices");
            Assert.That(heldAfter, Is.EqualTo(1), "taken up again at the resume");
            Assert.That(panic.Message, Is.EqualTo("after cont"));
            Assert.That(rig.TakeUsed(1).Length, Is.EqualTo(8u));
            Assert.That(rig.ReadStatus(posted), Is.EqualTo((Accepted, (uint)panic.Sequence)));
        }
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_39_RecordCommittedBeforeTheStop_IsReportedAndCompletedAtTheSuspend()
    {
        using WatchdogRig rig = Rig();
        PostedRecord posted = rig.PostRecordBuffer();
        // Committed, but its notification never came (the stop raced it).
        rig.Commit(posted, RecordSpec.Panic("raced the stop"), notify: false);
        Assert.That(rig.Drain<GuestPanickedEvent>(), Is.Empty);

        Assert.That(rig.Device.Suspend(), Is.True);
        GuestPanickedEvent panic = rig.Drain<GuestPanickedEvent>().Single();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(panic.Message, Is.EqualTo("raced the stop"));
            Assert.That(rig.TryTakeUsed(1, out UsedBuffer used), Is.True, "completed on the rings the driver still owns");
            Assert.That(used.Length, Is.EqualTo(8u));
            Assert.That(rig.ReadStatus(posted).Status, Is.EqualTo(Accepted));
        }
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_39_ResetEndsTheSuspension_AsTheDriverResetItWas()
    {
        using WatchdogRig rig = Rig();
        rig.Heartbeat();
        rig.DrainEvents();
        Assert.That(rig.Device.Suspend(), Is.True);

        rig.ResetDevice();
        WatchdogDeviceStatus status = rig.Device.GetStatus();
        DriverResetEvent reset = rig.Drain<DriverResetEvent>().Single();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(reset.WatchdogKeptRunning, Is.False);
            Assert.That(status.Suspended || status.Paused || status.Armed, Is.False, "reset: disarmed, clock running again");
            Assert.That(rig.Device.TryResume(new TestDeviceContext(rig.Memory, VirtioFeatures.Version1, rig.Queues)), Is.False, "nothing left to resume");
        }
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_39_ActivateInsteadOfResume_ResetsFirst()
    {
        using WatchdogRig rig = Rig();
        rig.Heartbeat();
        rig.DrainEvents();
        Assert.That(rig.Device.Suspend(), Is.True);

        rig.Device.Activate(SameRings(rig));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Drain<DriverResetEvent>(), Has.Count.EqualTo(1));
            Assert.That(rig.Device.GetStatus().Armed, Is.False);
            Assert.That(rig.Device.GetStatus().DriverBound, Is.True);
        }
    }

    [Test]
    public void HostPauseAndSuspension_EachKeepsTheClockStopped_UntilBothEnd()
    {
        using WatchdogRig rig = Rig();
        rig.Heartbeat();
        rig.Device.Pause();                 // QMP STOP
        Assert.That(rig.Device.Suspend(), Is.True);
        rig.Device.Resume();                // QMP RESUME comes before the rings restart
        bool pausedBetween = rig.Device.GetStatus().Paused;
        rig.Time.Advance(TimeSpan.FromMinutes(2));
        List<WatchdogExpiredEvent> between = rig.Drain<WatchdogExpiredEvent>();

        Assert.That(rig.Device.TryResume(SameRings(rig)), Is.True);
        bool pausedAfter = rig.Device.GetStatus().Paused;

        rig.Device.Pause();
        Assert.That(rig.Device.Suspend(), Is.True);
        Assert.That(rig.Device.TryResume(SameRings(rig)), Is.True);
        bool pausedByHostOnly = rig.Device.GetStatus().Paused;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(pausedBetween, Is.True, "still suspended");
            Assert.That(between, Is.Empty);
            Assert.That(pausedAfter, Is.False);
            Assert.That(pausedByHostOnly, Is.True, "the host's pause outlives the suspension");
        }
    }

    [Test]
    public void TryResume_WithOtherFeatures_Declines_AndSuspendWithoutADriver_KeepsNothing()
    {
        using WatchdogRig rig = Rig();
        Assert.That(rig.Device.Suspend(), Is.True);
        Assert.That(rig.Device.Suspend(), Is.True, "already suspended");
        bool other = rig.Device.TryResume(new TestDeviceContext(rig.Memory, VirtioFeatures.Version1, rig.Queues));
        Assert.That(rig.Device.IsSuspended, Is.True, "a declined resume changes nothing");
        rig.ResetDevice();

        using var fresh = new WatchdogRig();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(other, Is.False);
            Assert.That(fresh.Device.Suspend(), Is.False, "no driver bound: nothing to keep");
            Assert.That(fresh.Device.IsSuspended, Is.False);
        }
    }

    [Test]
    public void SuspendObserver_RunsOncePerSuspension_AfterTheLock()
    {
        using WatchdogRig rig = Rig();
        int calls = 0;
        bool sawSuspended = false;
        rig.Device.SetSuspendObserver(d =>
        {
            calls++;
            sawSuspended = d.IsSuspended && d.GetStatus().Suspended;   // takes the device lock: not held here
        });

        _ = rig.Device.Suspend();
        _ = rig.Device.Suspend();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(calls, Is.EqualTo(1));
            Assert.That(sawSuspended, Is.True);
        }
    }
}
