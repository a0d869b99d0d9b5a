using VirtioPanic.Device.Tests.Rig;

namespace VirtioPanic.Device.Tests;

// Versioned save and restore of the device state.
public sealed class SaveRestoreTests
{
    [Test]
    public void SaveRestore_RoundTripsWatchdogStateCountersAndBootReason()
    {
        byte[] saved;
        long lastSequence;
        using (WatchdogRig source = WatchdogRig.Started(WatchdogFeatures.Control | WatchdogFeatures.Pretimeout | WatchdogFeatures.BootReason))
        {
            source.Control(2, 60_000);
            source.Control(6, 10_000);
            source.Control(7);
            source.Device.SetBootReason(WatchdogBootReason.Panic);
            source.Time.Advance(TimeSpan.FromSeconds(15));
            source.WriteConfig32(0x04, 5); // a counted protocol error
            lastSequence = source.DrainEvents().Max(e => e.Sequence);
            source.Device.Pause();
            saved = source.Device.SaveState();
        }

        using var target = new WatchdogRig(new WatchdogDeviceOptions { ResumeGrace = TimeSpan.Zero });
        target.Device.RestoreState(saved);
        target.Device.Resume();

        WatchdogDeviceStatus status = target.Device.GetStatus();
        Assert.Multiple(() =>
        {
            Assert.That(status.Armed, Is.True);
            Assert.That(status.Nowayout, Is.True);
            Assert.That(status.Timeout, Is.EqualTo(TimeSpan.FromSeconds(60)));
            Assert.That(status.Pretimeout, Is.EqualTo(TimeSpan.FromSeconds(10)));
            Assert.That(status.TimeLeft, Is.EqualTo(TimeSpan.FromSeconds(45)));
            Assert.That(status.BootReason, Is.EqualTo(WatchdogBootReason.Panic));
            Assert.That(status.ProtocolErrors, Is.EqualTo(1));
        });

        target.Time.Advance(TimeSpan.FromSeconds(35));
        WatchdogPretimeoutEvent pretimeout = target.Drain<WatchdogPretimeoutEvent>().Single();
        Assert.That(pretimeout.Sequence, Is.GreaterThan(lastSequence), "sequence numbers continue");
        target.Time.Advance(TimeSpan.FromSeconds(10));
        Assert.That(target.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));
    }

    [Test]
    public void SaveRestore_HeldRecordBuffers_SurviveAndAreConsumedAfterRestore()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Events);
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 256);
        rig.Device.Pause();
        byte[] saved = rig.Device.SaveState();
        Rig.TestDeviceContext context = rig.Context!;
        Virtio.Queue.VirtqueueState queueState = rig.Queues[1].SaveState();

        // The transport tears the session down and rebuilds it from its own saved queue state.
        rig.Device.Reset();
        rig.Queues[1].Reset();
        Assert.That(rig.Queues[1].RestoreState(rig.Memory, queueState), Is.EqualTo(Virtio.Queue.VirtqueueStatus.Ok));
        rig.Device.RestoreState(saved);
        rig.Device.Activate(context);
        rig.Device.Resume();
        Assert.That(rig.Device.HeldRecordCount, Is.EqualTo(1));

        rig.Commit(posted, RecordSpec.Panic("after restore"));

        Assert.Multiple(() =>
        {
            Assert.That(rig.Drain<GuestPanickedEvent>().Single().Message, Is.EqualTo("after restore"));
            Assert.That(rig.TakeUsed(1).Id, Is.EqualTo(posted.Head));
        });
    }

    [Test]
    public void Restore_UnknownVersion_FailsNamingBothVersions()
    {
        using var rig = new WatchdogRig();
        byte[] saved = rig.Device.SaveState();
        saved[4] = 9;

        Assert.That(() => rig.Device.RestoreState(saved), Throws.TypeOf<NotSupportedException>().With.Message.Contains("version 9").And.Message.Contains("version 1"));
    }

    [Test]
    public void Restore_GarbageOrTruncated_FailsWithInvalidData()
    {
        using var rig = new WatchdogRig();
        byte[] saved = rig.Device.SaveState();

        Assert.Multiple(() =>
        {
            Assert.That(() => rig.Device.RestoreState([1, 2, 3, 4, 5, 6, 7, 8]), Throws.TypeOf<InvalidDataException>());
            Assert.That(() => rig.Device.RestoreState(saved.AsSpan(0, saved.Length - 3)), Throws.TypeOf<InvalidDataException>());
            Assert.That(() => rig.Device.RestoreState([.. saved, 0]), Throws.TypeOf<InvalidDataException>());
        });
    }

    [Test]
    public void Restore_TimeoutOutsideThisDevicesBounds_Rejected()
    {
        byte[] saved;
        using (WatchdogRig source = WatchdogRig.Started(WatchdogFeatures.Control))
        {
            source.Control(2, 600_000);
            saved = source.Device.SaveState();
        }

        using var target = new WatchdogRig(new WatchdogDeviceOptions { MaxTimeout = TimeSpan.FromSeconds(60) });

        Assert.That(() => target.Device.RestoreState(saved), Throws.TypeOf<InvalidDataException>());
    }

    [Test]
    public void SaveState_StartsWithMagicAndVersion()
    {
        using var rig = new WatchdogRig();

        byte[] saved = rig.Device.SaveState();

        Assert.Multiple(() =>
        {
            Assert.That(BitConverter.ToUInt32(saved, 0), Is.EqualTo(0x44575056u));
            Assert.That(BitConverter.ToInt32(saved, 4), Is.EqualTo(WatchdogDevice.StateVersion));
        });
    }
}
