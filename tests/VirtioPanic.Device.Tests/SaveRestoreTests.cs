using System.Buffers.Binary;
using CsCheck;
using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.Virtio.Device;

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
        Assert.That(target.Device.RestoreState(saved), Is.EqualTo(SnapshotStatus.Ok));
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
        Assert.That(rig.Device.RestoreState(saved), Is.EqualTo(SnapshotStatus.Ok));
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
    public void Restore_UnknownVersion_IsUnsupportedVersion()
    {
        using var rig = new WatchdogRig();
        byte[] saved = rig.Device.SaveState();
        saved[4] = 9;

        Assert.That(rig.Device.RestoreState(saved), Is.EqualTo(SnapshotStatus.UnsupportedVersion));
    }

    [Test]
    public void Restore_GarbageOrTruncated_IsMalformed()
    {
        using var rig = new WatchdogRig();
        byte[] saved = rig.Device.SaveState();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Device.RestoreState([1, 2, 3, 4, 5, 6, 7, 8]), Is.EqualTo(SnapshotStatus.Malformed));
            Assert.That(rig.Device.RestoreState(saved.AsSpan(0, saved.Length - 3)), Is.EqualTo(SnapshotStatus.Malformed));
            Assert.That(rig.Device.RestoreState([.. saved, 0]), Is.EqualTo(SnapshotStatus.Malformed));
            Assert.That(rig.Device.RestoreState([]), Is.EqualTo(SnapshotStatus.Malformed));
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

        Assert.That(target.Device.RestoreState(saved), Is.EqualTo(SnapshotStatus.InvalidState));
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
    // --- hostile images (issue 19): every value bounded by what the device itself can produce ---

    // Offsets of the version-1 layout (WatchdogDevice.State.cs).
    private const int FlagsOffset = 28;
    private const int RunTimeOffset = 29;
    private const int TimeoutOffset = 37;
    private const int PretimeoutOffset = 45;
    private const int LastKeepaliveOffset = 53;
    private const int GraceFloorOffset = 61;
    private const int CountdownOffset = 77;
    private const int HeldCountOffset = 85;

    [Test]
    public void Restore_GraceFloorTenYearsAhead_IsInvalidState_AndTheWatchdogStillBites()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        rig.Heartbeat();
        rig.Device.Pause();
        byte[] image = rig.Device.SaveState();
        long runTime = BinaryPrimitives.ReadInt64LittleEndian(image.AsSpan(RunTimeOffset));
        Patch(image, GraceFloorOffset, runTime + TimeSpan.FromDays(3650).Ticks);

        SnapshotStatus status = rig.Device.RestoreState(image);
        rig.Device.Resume();
        rig.Time.Advance(rig.Options.DefaultTimeout);

        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(SnapshotStatus.InvalidState));
            Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1), "the refused floor was not applied: the countdown ended on time");
        });
    }

    [Test]
    public void Restore_GraceFloorAtTheDevicesOwnGrace_IsAccepted()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        rig.Heartbeat();
        rig.Device.Pause();
        byte[] image = rig.Device.SaveState();
        long runTime = BinaryPrimitives.ReadInt64LittleEndian(image.AsSpan(RunTimeOffset));
        Patch(image, GraceFloorOffset, runTime + rig.Options.ResumeGrace.Ticks);

        Assert.That(rig.Device.RestoreState(image), Is.EqualTo(SnapshotStatus.Ok));
    }

    // Armed at the maximum: the restore's grace arithmetic overflowed (OverflowException, not a
    // documented error). Disarmed 3 s below it: the restore was accepted and the next heartbeat's
    // deadline overflowed on the queue worker, which then wedged the device reset.
    [TestCase(0L, (byte)1, TestName = "Restore_ArmedRunTimeAtTheMaximum_IsInvalidStateNotAnException")]
    [TestCase(30_000_000L, (byte)0, TestName = "Restore_RunTimeThreeSecondsBelowTheMaximum_IsInvalidState")]
    public void Restore_RunTimeNearTheMaximum_IsInvalidState_AndTheDeviceKeepsWorking(long ticksBelowMax, byte flags)
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        byte[] image = rig.Device.SaveState();
        image[FlagsOffset] = flags;
        Patch(image, RunTimeOffset, long.MaxValue - ticksBelowMax);
        Patch(image, LastKeepaliveOffset, 0);

        SnapshotStatus status = SnapshotStatus.Ok;
        Assert.That(() => status = rig.Device.RestoreState(image), Throws.Nothing);
        Assert.That(status, Is.EqualTo(SnapshotStatus.InvalidState));

        // Nothing was restored: heartbeats (which compute deadlines from the run time) still work,
        // and the watchdog still bites on time.
        Assert.That(rig.Heartbeat(), Is.EqualTo(1));
        rig.Time.Advance(rig.Options.DefaultTimeout);
        Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));
    }

    [Test]
    public void Restore_RefusedImage_ChangesNothing()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Control | WatchdogFeatures.BootReason);
        rig.Control(2, 30_000);
        rig.Device.SetBootReason(WatchdogBootReason.Panic);
        rig.Time.Advance(TimeSpan.FromSeconds(5));
        WatchdogDeviceStatus before = rig.Device.GetStatus();

        // A plausible image except for one field at its very end: nothing of its beginning may stick.
        byte[] image;
        using (WatchdogRig other = WatchdogRig.Started(WatchdogFeatures.Control))
        {
            other.Control(2, 50_000);
            other.Control(7);
            image = other.Device.SaveState();
        }

        Patch(image, CountdownOffset, -1);

        Assert.That(rig.Device.RestoreState(image), Is.EqualTo(SnapshotStatus.InvalidState));
        WatchdogDeviceStatus after = rig.Device.GetStatus();
        Assert.Multiple(() =>
        {
            Assert.That(after.Timeout, Is.EqualTo(before.Timeout));
            Assert.That(after.Nowayout, Is.False);
            Assert.That(after.Paused, Is.False, "a refused restore does not pause the clock");
            Assert.That(after.BootReason, Is.EqualTo(WatchdogBootReason.Panic));
            Assert.That(after.TimeLeft, Is.EqualTo(before.TimeLeft));
        });
    }

    [TestCase(FlagsOffset, 64L, 1, TestName = "Restore_UnknownFlagBit_IsInvalidState")]
    [TestCase(FlagsOffset, 1L | 4L, 1, TestName = "Restore_ArmedAndExpired_IsInvalidState")]
    [TestCase(FlagsOffset, 16L, 1, TestName = "Restore_NoticePendingWhileDisarmed_IsInvalidState")]
    [TestCase(TimeoutOffset, 0L, 8, TestName = "Restore_ZeroTimeout_IsInvalidState")]
    [TestCase(TimeoutOffset, 200_005_000L, 8, TestName = "Restore_TimeoutNotWholeMilliseconds_IsInvalidState")]
    [TestCase(PretimeoutOffset, 200_000_000L, 8, TestName = "Restore_PretimeoutNotBelowTheTimeout_IsInvalidState")]
    [TestCase(LastKeepaliveOffset, long.MaxValue, 8, TestName = "Restore_LastKeepaliveInTheFuture_IsInvalidState")]
    [TestCase(CountdownOffset, long.MaxValue, 8, TestName = "Restore_CountdownBeyondAnyReachableValue_IsInvalidState")]
    [TestCase(HeldCountOffset, 17L, 4, TestName = "Restore_MoreHeldRecordsThanTheDeviceHolds_IsInvalidState")]
    public void Restore_ImpossibleField_IsInvalidState(int offset, long value, int width)
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Control | WatchdogFeatures.Pretimeout);
        rig.Control(2, 20_000);
        rig.Time.Advance(TimeSpan.FromSeconds(1));
        byte[] image = rig.Device.SaveState();
        Assert.That(rig.Device.RestoreState(image), Is.EqualTo(SnapshotStatus.Ok), "the unpatched image is valid");

        switch (width)
        {
            case 1:
                image[offset] = (byte)value;
                break;
            case 4:
                BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(offset), (uint)value);
                break;
            default:
                Patch(image, offset, value);
                break;
        }

        Assert.That(rig.Device.RestoreState(image), Is.EqualTo(SnapshotStatus.InvalidState));
    }

    [Test]
    public void Restore_HeldRecordsDuplicatedOrOversized_AreInvalidState()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Events);
        rig.PostRecordBuffer(recordLength: 256);
        rig.PostRecordBuffer(recordLength: 256);
        byte[] image = rig.Device.SaveState();
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(HeldCountOffset)), Is.EqualTo(2u));
        const int record = HeldCountOffset + 4;
        const int recordSize = 2 + 2 + 1 + 1 + (2 * 12);

        byte[] duplicate = (byte[])image.Clone();
        duplicate.AsSpan(record, 2).CopyTo(duplicate.AsSpan(record + recordSize, 2));
        byte[] oversized = (byte[])image.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(oversized.AsSpan(record + 6 + 8), 0xFFFF_FFFF);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Device.RestoreState(duplicate), Is.EqualTo(SnapshotStatus.InvalidState), "two held records with one chain id");
            Assert.That(rig.Device.RestoreState(oversized), Is.EqualTo(SnapshotStatus.InvalidState), "a 4 GiB held buffer");
            Assert.That(rig.Device.RestoreState(image), Is.EqualTo(SnapshotStatus.Ok));
        });
    }

    // Property: whatever the bytes, RestoreState returns a status and never throws; the device then
    // resumes, answers its host, resets without wedging, and an armed watchdog is never left
    // without its timer: it expires by the time left it reports.
    [Test]
    public void Restore_RandomAndMutatedImages_NeverThrowNeverWedgeAndNeverDisableAnArmedWatchdog()
    {
        byte[] valid;
        using (WatchdogRig source = WatchdogRig.Started(WatchdogFeatures.All))
        {
            source.Control(2, 30_000);
            source.Control(6, 5_000);
            source.PostRecordBuffer(recordLength: 256);
            source.Time.Advance(TimeSpan.FromSeconds(26));
            source.Device.Pause();
            valid = source.Device.SaveState();
        }

        Gen<byte[]> mutated = Gen.Select(Gen.Int[0, valid.Length - 1].Array[1, 6], Gen.Byte.Array[6], Gen.Int[0, 3], (at, with, trim) =>
        {
            byte[] image = (byte[])valid.Clone();
            for (int i = 0; i < at.Length; i++)
            {
                image[at[i]] = with[i];
            }

            return trim == 0 ? image[..^Math.Min(image.Length, at.Length)] : image;
        });
        Gen<byte[]> random = Gen.Byte.Array[0, 200];
        Gen<byte[]> header = Gen.Byte.Array[0, 120].Select(tail => (byte[])[.. valid.AsSpan(0, 8), .. tail]);
        int accepted = 0;
        int armed = 0;

        Gen.OneOf(mutated, random, header).Sample(
            image =>
            {
                using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.All);
                SnapshotStatus status = rig.Device.RestoreState(image);
                accepted += status == SnapshotStatus.Ok ? 1 : 0;
                rig.Device.Resume();
                WatchdogDeviceStatus after = rig.Device.GetStatus();
                if (after.Armed)
                {
                    armed++;
                    Assert.That(after.TimeLeft, Is.Not.Null);
                    rig.Time.Advance(after.TimeLeft!.Value);
                    Assert.That(rig.Drain<WatchdogExpiredEvent>(), Has.Count.EqualTo(1), "an armed watchdog expires by the time left it reports");
                }

                Assert.That(rig.Heartbeat(), Is.EqualTo(1), "the device still answers");
                rig.ResetDevice();
            },
            iter: 2000,
            threads: 1);

        Assert.Multiple(() =>
        {
            Assert.That(accepted, Is.GreaterThan(20), "some mutations are benign and restore");
            Assert.That(armed, Is.GreaterThan(10), "restored armed watchdogs were checked");
        });
    }

    // The same property for the vCPU part (spec §6.12, issue 15): a device with four vCPU slots, one
    // stalled with its notice pending, one tracked. Whatever the image, RestoreState never throws,
    // and after a resume no slot is left wedged: nobody pets, so every tracked or stalled vCPU the
    // restored device reports reaches stage two within grace + timeout + second stage, and then
    // none is tracked.
    [Test]
    public void Restore_RandomAndMutatedVcpuParts_NeverThrow_EveryRestoredSlotReachesStageTwo()
    {
        var options = new WatchdogDeviceOptions
        {
            VcpuCount = 4,
            VcpuStallTimeout = TimeSpan.FromSeconds(2),
            VcpuStallSecondStage = TimeSpan.FromSeconds(3),
            ResumeGrace = TimeSpan.FromSeconds(1),
        };
        byte[] valid;
        using (WatchdogRig source = WatchdogRig.Started(WatchdogFeatures.All, options))
        {
            source.WriteConfig32(0x20, 1u | 1u << 16);
            source.Time.Advance(TimeSpan.FromSeconds(2.5));
            source.WriteConfig32(0x20, 2u | 1u << 16);
            source.Time.Advance(TimeSpan.FromSeconds(1));
            source.Device.Pause();
            valid = source.Device.SaveState();
        }

        int vcpuPart = 4 + 8 + 8 + 4 * 33;
        Gen<byte[]> mutated = Gen.Select(Gen.Int[valid.Length - vcpuPart, valid.Length - 1].Array[1, 4], Gen.Byte.Array[4], Gen.Int[0, 7], (at, with, trim) =>
        {
            byte[] image = (byte[])valid.Clone();
            for (int i = 0; i < at.Length; i++)
            {
                image[at[i]] = trim == 1 ? (byte)(image[at[i]] ^ (1 << (with[i] & 7))) : with[i];
            }

            return trim == 0 ? image[..^at.Length] : image;
        });
        int accepted = 0;
        int slotsChecked = 0;

        mutated.Sample(
            image =>
            {
                using var rig = new WatchdogRig(options);
                SnapshotStatus status = rig.Device.RestoreState(image);
                rig.Activate(WatchdogFeatures.All);
                rig.Device.Resume();
                WatchdogDeviceStatus after = rig.Device.GetStatus();
                int live = after.TrackedVcpus + after.StalledVcpus;
                accepted += status == SnapshotStatus.Ok ? 1 : 0;
                slotsChecked += live;
                for (int step = 0; step < 70; step++)
                {
                    rig.Time.Advance(TimeSpan.FromMilliseconds(100));
                }

                WatchdogDeviceStatus end = rig.Device.GetStatus();
                Assert.Multiple(() =>
                {
                    Assert.That(rig.Drain<VcpuStallExpiredEvent>().Select(e => e.Vcpu).Distinct().Count(), Is.EqualTo(live), "every restored slot reached stage two");
                    Assert.That(end.TrackedVcpus + end.StalledVcpus, Is.Zero, "no slot is left wedged");
                });
                Assert.That(rig.Heartbeat(), Is.EqualTo(1), "the device still answers");
                rig.ResetDevice();
            },
            iter: 1000,
            threads: 1);

        Assert.Multiple(() =>
        {
            Assert.That(accepted, Is.GreaterThan(20), "some mutations are benign and restore");
            Assert.That(slotsChecked, Is.GreaterThan(40), "restored slots were checked");
        });
    }

    // Property: every truncation of a real image, random bytes and mutations of it, restored into a
    // device that is bound, armed, holds a record buffer and has a boot reason. RestoreState never
    // throws, every truncation is Malformed, and a refused image leaves the device exactly as it was
    // (its SaveState and its status are what they were before), so nothing is half-restored.
    [Test]
    public void Restore_TruncatedRandomOrMutatedImage_Refused_LeavesTheDeviceExactlyAsItWas()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.All);
        rig.Control(2, 30_000);
        rig.Control(6, 5_000);
        rig.PostRecordBuffer(recordLength: 256);
        rig.Device.SetBootReason(WatchdogBootReason.Watchdog);
        rig.Time.Advance(TimeSpan.FromSeconds(3));
        byte[] valid = rig.Device.SaveState();
        int refused = 0;

        void Check(byte[] image, bool mustRefuse)
        {
            byte[] stateBefore = rig.Device.SaveState();
            WatchdogDeviceStatus before = rig.Device.GetStatus();
            SnapshotStatus status = rig.Device.RestoreState(image);
            if (status == SnapshotStatus.Ok)
            {
                Assert.That(mustRefuse, Is.False, $"a {image.Length}-byte truncation of a {valid.Length}-byte image was accepted");
                return;
            }

            refused++;
            Assert.Multiple(() =>
            {
                Assert.That(status, mustRefuse ? Is.EqualTo(SnapshotStatus.Malformed) : Is.Not.EqualTo(SnapshotStatus.Ok));
                Assert.That(rig.Device.SaveState(), Is.EqualTo(stateBefore), $"refused ({status}): the saved state is unchanged");
                Assert.That(rig.Device.GetStatus(), Is.EqualTo(before), $"refused ({status}): the status is unchanged");
            });
        }

        for (int length = 0; length < valid.Length; length++)
        {
            Check(valid[..length], mustRefuse: true);
        }

        Assert.That(rig.Device.SaveState(), Is.EqualTo(valid), "nothing was accepted yet");
        Gen<byte[]> random = Gen.Byte.Array[0, valid.Length + 16];
        Gen<byte[]> mutated = Gen.Select(Gen.Int[0, valid.Length - 1].Array[1, 4], Gen.Byte.Array[4], (at, with) =>
        {
            byte[] image = (byte[])valid.Clone();
            for (int i = 0; i < at.Length; i++)
            {
                image[at[i]] = with[i];
            }

            return image;
        });
        Gen.OneOf(random, mutated).Sample(image => Check(image, mustRefuse: false), iter: 1000, threads: 1);

        Assert.That(refused, Is.GreaterThan(valid.Length + 100), "the truncations and many other images were refused");
    }

    private static void Patch(byte[] image, int offset, long value) => BinaryPrimitives.WriteInt64LittleEndian(image.AsSpan(offset), value);
}
