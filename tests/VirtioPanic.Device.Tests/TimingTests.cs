using VirtioPanic.Device.Tests.Rig;

namespace VirtioPanic.Device.Tests;

// Watchdog time is VM run time on the injected TimeProvider (spec §6.1); FakeTimeProvider, no sleeps.
public sealed class TimingTests
{
    private static readonly TimeSpan s_tick = TimeSpan.FromTicks(1);

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_7_ExpiresExactlyAtTheDeadline_NotOneTickBefore()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        rig.Heartbeat();
        rig.DrainEvents();

        rig.Time.Advance(TimeSpan.FromSeconds(20) - s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty, "one tick before the deadline");

        rig.Time.Advance(s_tick);
        WatchdogExpiredEvent expired = rig.Drain<WatchdogExpiredEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(expired.Timeout, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(expired.VmRunTime, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(expired.IsCritical, Is.True);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_7_AfterExpiry_DisarmedWithExpiredFlagUntilRearmed()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Control);
        rig.Control(2, 5_000);
        rig.Time.Advance(TimeSpan.FromSeconds(5));

        ControlResult afterExpiry = rig.Control(1);
        rig.Time.Advance(TimeSpan.FromMinutes(10));
        Assert.Multiple(() =>
        {
            Assert.That(afterExpiry.Armed, Is.False);
            Assert.That(afterExpiry.Expired, Is.True);
            Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1), "one expiry per arming");
        });

        ControlResult rearmed = rig.Control(2);
        Assert.Multiple(() =>
        {
            Assert.That(rearmed.Armed, Is.True);
            Assert.That(rearmed.Expired, Is.False);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_7_ExpiryDeadlineMovesWithEveryKeepalive()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        rig.Heartbeat();
        rig.Time.Advance(TimeSpan.FromSeconds(19));
        rig.Heartbeat();

        rig.Time.Advance(TimeSpan.FromSeconds(20) - s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty);
        rig.Time.Advance(s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_8_PausedVm_NeverExpires_AndTimeLeftFreezes()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None, new WatchdogDeviceOptions { ResumeGrace = TimeSpan.Zero });
        rig.Heartbeat();
        rig.Time.Advance(TimeSpan.FromSeconds(15));

        rig.Device.Pause();
        rig.Time.Advance(TimeSpan.FromHours(3));

        WatchdogDeviceStatus paused = rig.Device.GetStatus();
        Assert.Multiple(() =>
        {
            Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty);
            Assert.That(paused.Paused, Is.True);
            Assert.That(paused.TimeLeft, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(paused.VmRunTime, Is.EqualTo(TimeSpan.FromSeconds(15)));
        });

        rig.Device.Resume();
        rig.Time.Advance(TimeSpan.FromSeconds(5) - s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty, "the remaining 5 s count only after resume");
        rig.Time.Advance(s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_8_StartPaused_ClockWaitsForResume()
    {
        using var rig = new WatchdogRig(new WatchdogDeviceOptions { StartPaused = true, ResumeGrace = TimeSpan.Zero });
        rig.Activate(WatchdogFeatures.None);
        rig.Heartbeat();

        rig.Time.Advance(TimeSpan.FromMinutes(5));

        Assert.Multiple(() =>
        {
            Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty);
            Assert.That(rig.Device.GetStatus().VmRunTime, Is.EqualTo(TimeSpan.Zero));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_9_AfterResume_GraceAppliesEvenWhenAlmostExpired()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None, new WatchdogDeviceOptions { ResumeGrace = TimeSpan.FromSeconds(10) });
        rig.Heartbeat();
        rig.Time.Advance(TimeSpan.FromSeconds(19));
        rig.Device.Pause();
        rig.Time.Advance(TimeSpan.FromMinutes(1));

        rig.Device.Resume();

        Assert.That(rig.Device.GetStatus().TimeLeft, Is.EqualTo(TimeSpan.FromSeconds(10)));
        rig.Time.Advance(TimeSpan.FromSeconds(10) - s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty, "inside the grace");
        rig.Time.Advance(s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1), "at the end of the grace");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_9_GraceNeverShortensALongerCountdown()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None, new WatchdogDeviceOptions { ResumeGrace = TimeSpan.FromSeconds(5) });
        rig.Heartbeat();
        rig.Device.Pause();
        rig.Device.Resume();

        Assert.That(rig.Device.GetStatus().TimeLeft, Is.EqualTo(TimeSpan.FromSeconds(20)));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_9_AfterRestore_GraceAppliesAndClockWaitsForResume()
    {
        byte[] saved;
        using (WatchdogRig source = WatchdogRig.Started(WatchdogFeatures.None, new WatchdogDeviceOptions { ResumeGrace = TimeSpan.FromSeconds(10) }))
        {
            source.Heartbeat();
            source.Time.Advance(TimeSpan.FromSeconds(18));
            source.Device.Pause();
            saved = source.Device.SaveState();
        }

        using var target = new WatchdogRig(new WatchdogDeviceOptions { ResumeGrace = TimeSpan.FromSeconds(10) });
        target.Device.RestoreState(saved);
        target.Time.Advance(TimeSpan.FromHours(1));
        Assert.That(target.Drain<WatchdogExpiredEvent>(), Is.Empty, "restored paused");

        target.Device.Resume();
        target.Time.Advance(TimeSpan.FromSeconds(10) - s_tick);
        Assert.That(target.Drain<WatchdogExpiredEvent>(), Is.Empty, "2 s were left, but the grace gives 10 s");
        target.Time.Advance(s_tick);
        Assert.That(target.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));
    }
    [Test]
    [Category("Conformance")]
    public void WDT_DEV_35_StopAndRearmWithAShortTimeoutInsideTheGrace_ExpiresOnlyWhenTheGraceEnds()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Control, new WatchdogDeviceOptions { ResumeGrace = TimeSpan.FromSeconds(30) });
        rig.Control(2, 20_000);
        rig.Device.Pause();
        rig.Time.Advance(TimeSpan.FromMinutes(5));
        rig.Device.Resume();
        rig.Time.Advance(TimeSpan.FromSeconds(2));

        Assert.That(rig.Control(3).Status, Is.EqualTo(0), "STOP");
        ControlResult restarted = rig.Control(2, 1_000);
        Assert.That(restarted.TimeLeftMs, Is.EqualTo(28_000u), "START inside the window: the countdown ends with the window");
        rig.Time.Advance(TimeSpan.FromSeconds(28) - s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty, "inside the grace, whatever the guest did");
        rig.Time.Advance(s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1), "at the end of the grace");

        // Outside the window the floor is in the past: a re-arm gets exactly its timeout.
        rig.Control(2, 1_000);
        rig.Time.Advance(TimeSpan.FromSeconds(1) - s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty);
        rig.Time.Advance(s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_35_DisarmedAtResume_ArmedInsideTheGrace_AlsoAfterADeviceReset_GetsTheWholeGrace()
    {
        var options = new WatchdogDeviceOptions { DefaultTimeout = TimeSpan.FromSeconds(5), MinTimeout = TimeSpan.FromSeconds(5), ResumeGrace = TimeSpan.FromSeconds(30) };
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None, options);
        rig.Device.Pause();
        rig.Device.Resume();
        rig.Time.Advance(TimeSpan.FromSeconds(1));
        rig.Heartbeat();
        Assert.That(rig.Device.GetStatus().TimeLeft, Is.EqualTo(TimeSpan.FromSeconds(29)), "a first heartbeat inside the window");

        // The driver resets the device (the watchdog stops) and arms it again, still inside the window.
        rig.Time.Advance(TimeSpan.FromSeconds(1));
        rig.ResetDevice();
        rig.Activate(WatchdogFeatures.None);
        rig.Heartbeat();

        rig.Time.Advance(TimeSpan.FromSeconds(28) - s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Is.Empty, "the 5 s timeout cannot end the countdown inside the grace");
        rig.Time.Advance(s_tick);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1), "exactly when the grace ends");
    }
}
