using CsCheck;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Device;

public sealed class VirtioDeviceControllerTests
{
    private const DeviceStatus Ack = DeviceStatus.Acknowledge;
    private const DeviceStatus AckDriver = DeviceStatus.Acknowledge | DeviceStatus.Driver;
    private const DeviceStatus FeaturesOk = AckDriver | DeviceStatus.FeaturesOk;
    private const DeviceStatus Live = FeaturesOk | DeviceStatus.DriverOk;
    private const ulong Accepted = VirtioFeatures.Version1 | VirtioFeatures.RingReset | 1;

    // Offsets in the controller snapshot (see VirtioDeviceController.Snapshot.cs).
    private const int StatusOffset = 26;
    private const int NegotiatedOffset = 43;
    private const int FirstQueueOffset = 60;
    private const int QueueRecordLength = 35;

    private GuestMemory _memory = null!;
    private GuestAllocator _allocator = null!;
    private ControllerTestDevice _device = null!;
    private RecordingSignals _signals = null!;
    private VirtioDeviceController _controller = null!;

    [SetUp]
    public void SetUp()
    {
        _memory = GuestMemory.CreateAnonymous(4 << 20);
        _allocator = new GuestAllocator(_memory, 0x1000, 2 << 20);
        _device = new ControllerTestDevice();
        _signals = new RecordingSignals();
        _controller = new VirtioDeviceController(_device, _memory, _signals);
    }

    [TearDown]
    public void TearDown() => _memory.Dispose();

    [Test]
    public void Constructor_OfferedFeatures_KeepDeviceAndRingBitsAndWithholdTheRest()
    {
        const ulong deviceBits = 1UL | (1UL << 23) | (1UL << 50) | (1UL << 63);
        var device = new ControllerTestDevice(deviceBits | VirtioFeatures.EventIndex | VirtioFeatures.NotificationData
            | VirtioFeatures.AccessPlatform | VirtioFeatures.InOrder | VirtioFeatures.OrderPlatform | (1UL << 41) | (1UL << 45));

        var controller = new VirtioDeviceController(device, _memory, _signals);

        Assert.That(controller.OfferedFeatures, Is.EqualTo(deviceBits | VirtioFeatures.EventIndex | VirtioFeatures.Version1 | VirtioFeatures.RingReset));
    }

    [Test]
    public void Constructor_RingResetDisabled_IsNotOffered()
    {
        var controller = new VirtioDeviceController(_device, _memory, _signals, offerRingReset: false);

        Assert.That(controller.OfferedFeatures & VirtioFeatures.RingReset, Is.Zero);
    }

    [TestCase((ushort)0)]
    [TestCase((ushort)12)]
    public void Constructor_InvalidMaximumQueueSize_Throws(ushort max)
    {
        Assert.That(() => new VirtioDeviceController(new ControllerTestDevice(maxQueueSize: max), _memory, _signals), Throws.ArgumentException);
    }

    [Test]
    public void WriteStatus_StandardSequence_ActivatesOnDriverOk()
    {
        Assert.Multiple(() =>
        {
            Assert.That(_controller.WriteStatus((byte)Ack), Is.EqualTo(DeviceStatusWriteResult.Accepted));
            Assert.That(_controller.WriteStatus((byte)AckDriver), Is.EqualTo(DeviceStatusWriteResult.Accepted));
        });
        WriteFeatures(Accepted);
        Assert.Multiple(() =>
        {
            Assert.That(_controller.WriteStatus((byte)FeaturesOk), Is.EqualTo(DeviceStatusWriteResult.Accepted));
            Assert.That(_controller.NegotiatedFeatures, Is.EqualTo(Accepted));
            Assert.That(_controller.WriteStatus((byte)Live), Is.EqualTo(DeviceStatusWriteResult.Activated));
            Assert.That(_controller.IsLive, Is.True);
            Assert.That(_device.Context!.NegotiatedFeatures, Is.EqualTo(Accepted));
        });
    }

    [TestCase(Accepted | (1UL << 7), DeviceStatusWriteResult.FeaturesRefusedUnoffered)]
    [TestCase(1UL, DeviceStatusWriteResult.FeaturesRefusedWithoutVersion1)]
    public void WriteStatus_FeaturesOkWithABadSubset_IsRefusedAndDoesNotStick(ulong features, DeviceStatusWriteResult expected)
    {
        _controller.WriteStatus((byte)AckDriver);
        WriteFeatures(features);

        Assert.Multiple(() =>
        {
            Assert.That(_controller.WriteStatus((byte)FeaturesOk), Is.EqualTo(expected));
            Assert.That(_controller.Status, Is.EqualTo(AckDriver));
            Assert.That(_controller.NegotiatedFeatures, Is.Zero);
        });
    }

    [Test]
    public void WriteStatus_DeviceRefusesFeatures_IsRefused()
    {
        _device.Accept = false;
        _controller.WriteStatus((byte)AckDriver);
        WriteFeatures(Accepted);

        Assert.That(_controller.WriteStatus((byte)Live), Is.EqualTo(DeviceStatusWriteResult.FeaturesRefusedByDevice));
        Assert.That(_controller.Status, Is.EqualTo(AckDriver), "neither FEATURES_OK nor DRIVER_OK from the same write");
    }

    [Test]
    public void WriteStatus_FeaturesOkBeforeDriver_IsOutOfOrder()
    {
        WriteFeatures(Accepted);

        Assert.That(_controller.WriteStatus((byte)(Ack | DeviceStatus.FeaturesOk)), Is.EqualTo(DeviceStatusWriteResult.FeaturesOkOutOfOrder));
        Assert.That(_controller.Status, Is.EqualTo(Ack));
    }

    [Test]
    public void WriteStatus_DriverOkWithoutFeaturesOk_IsRefused()
    {
        _controller.WriteStatus((byte)AckDriver);

        Assert.That(_controller.WriteStatus((byte)(AckDriver | DeviceStatus.DriverOk)), Is.EqualTo(DeviceStatusWriteResult.DriverOkWithoutFeaturesOk));
        Assert.That(_device.Context, Is.Null);
    }

    [Test]
    public void WriteStatus_ClearingABit_IsIgnored()
    {
        _controller.WriteStatus((byte)AckDriver);

        Assert.That(_controller.WriteStatus((byte)DeviceStatus.Driver), Is.EqualTo(DeviceStatusWriteResult.ClearedBitsIgnored));
        Assert.That(_controller.Status, Is.EqualTo(AckDriver));
    }

    [Test]
    public void WriteStatus_ReservedBits_AreDroppedAndTheRestRecorded()
    {
        Assert.That(_controller.WriteStatus((byte)Ack | 0x30), Is.EqualTo(DeviceStatusWriteResult.ReservedBitsIgnored));
        Assert.That(_controller.Status, Is.EqualTo(Ack));
    }

    [Test]
    public void WriteStatus_DriverOkWhileNeedsReset_IsRefused()
    {
        Negotiate();
        _controller.WriteQueueSize(3);
        _controller.EnableQueue(out _);   // sets DEVICE_NEEDS_RESET

        Assert.Multiple(() =>
        {
            Assert.That(_controller.WriteStatus((byte)(Live | DeviceStatus.DeviceNeedsReset)), Is.EqualTo(DeviceStatusWriteResult.DriverOkWhileNeedsReset));
            Assert.That(_controller.Status, Is.EqualTo(FeaturesOk | DeviceStatus.DeviceNeedsReset));
            Assert.That(_signals.ConfigSignals, Is.Zero, "no configuration interrupt before DRIVER_OK (§2.1.2)");
        });
    }

    [Test]
    public void WriteStatus_Zero_ResetsEverythingSynchronously()
    {
        BringUp();
        int resetsBefore = _device.Resets;

        Assert.That(_controller.WriteStatus(0), Is.EqualTo(DeviceStatusWriteResult.Reset));
        Assert.Multiple(() =>
        {
            Assert.That(_controller.Status, Is.EqualTo((DeviceStatus)0));
            Assert.That(_device.Resets, Is.EqualTo(resetsBefore + 1));
            Assert.That(_controller.IsLive, Is.False);
            Assert.That(_controller.NegotiatedFeatures, Is.Zero);
            Assert.That(_controller.DriverFeatures, Is.Zero);
            Assert.That(_controller.ReadQueueEnable(), Is.False);
            Assert.That(_controller.ReadQueueSize(), Is.EqualTo(16));
            Assert.That(_controller.ReadQueueAddress(VirtqueueArea.Descriptor), Is.Zero);
        });
    }

    [Test]
    public void WriteDriverFeatures_WindowsAboveBit63_AcceptZeroOnly()
    {
        _controller.WriteDriverFeatureSelect(2);

        Assert.Multiple(() =>
        {
            Assert.That(_controller.WriteDriverFeatures(0), Is.EqualTo(RegisterWriteResult.Accepted));
            Assert.That(_controller.WriteDriverFeatures(1), Is.EqualTo(RegisterWriteResult.FeatureWindowOutOfRange));
            Assert.That(_controller.ReadDriverFeatures(), Is.Zero);
        });
    }

    [Test]
    public void FeaturesOk_RandomSubsets_SticksExactlyWhenOfferedAndVersion1()
    {
        Gen.ULong.Sample(features =>
        {
            _controller.WriteStatus(0);
            _controller.WriteStatus((byte)AckDriver);
            WriteFeatures(features);
            _controller.WriteStatus((byte)FeaturesOk);
            bool expected = (features & ~_controller.OfferedFeatures) == 0 && (features & VirtioFeatures.Version1) != 0;
            return ((_controller.Status & DeviceStatus.FeaturesOk) != 0) == expected;
        }, iter: 2000, threads: 1);

        Gen.Select(Gen.Bool, Gen.Bool, Gen.Bool).Sample((version1, ringReset, deviceBit) =>
        {
            ulong features = (version1 ? VirtioFeatures.Version1 : 0) | (ringReset ? VirtioFeatures.RingReset : 0) | (deviceBit ? 1UL : 0);
            _controller.WriteStatus(0);
            _controller.WriteStatus((byte)AckDriver);
            WriteFeatures(features);
            _controller.WriteStatus((byte)FeaturesOk);
            return ((_controller.Status & DeviceStatus.FeaturesOk) != 0) == version1;
        }, threads: 1);
    }

    [Test]
    public void ConfigGeneration_RandomChangesAndReads_DiffersBetweenReadsExactlyWhenSomethingChanged()
    {
        // true = the device changes its configuration, false = the driver reads the generation.
        // One thread: every iteration drives the same device.
        Gen.Bool.Array[1, 600].Sample(steps =>
        {
            var controller = new VirtioDeviceController(_device, _memory, _signals);
            Bring(controller);
            IVirtioDeviceContext context = _device.Context!;
            byte last = (byte)controller.ReadConfigGeneration();
            bool changed = false;
            foreach (bool change in steps)
            {
                if (change)
                {
                    context.SignalConfigChange();
                    changed = true;
                    continue;
                }

                byte now = (byte)controller.ReadConfigGeneration();   // the 8-bit PCI view
                if ((now != last) != changed)
                {
                    return false;
                }

                last = now;
                changed = false;
            }

            return true;
        }, iter: 300, threads: 1);
    }

    [Test]
    public void Queue_SizeAboveMaximumOrNotPowerOfTwo_IsReportedAndRejectedAtEnable()
    {
        Negotiate();

        Assert.Multiple(() =>
        {
            Assert.That(_controller.WriteQueueSize(32), Is.EqualTo(RegisterWriteResult.InvalidValue));
            Assert.That(_controller.ReadQueueSize(), Is.EqualTo(32), "recorded as written");
            Assert.That(_controller.EnableQueue(out VirtqueueStatus status), Is.EqualTo(RegisterWriteResult.QueueConfigRejected));
            Assert.That(status, Is.EqualTo(VirtqueueStatus.InvalidSize));
            Assert.That(_controller.Status & DeviceStatus.DeviceNeedsReset, Is.EqualTo(DeviceStatus.DeviceNeedsReset));
        });
    }

    [Test]
    public void Queue_FieldsWhileEnabled_AreRefused()
    {
        Negotiate();
        SetupQueue(0);

        Assert.Multiple(() =>
        {
            Assert.That(_controller.WriteQueueSize(4), Is.EqualTo(RegisterWriteResult.QueueEnabled));
            Assert.That(_controller.WriteQueueAddress(VirtqueueArea.Device, high: true, 1), Is.EqualTo(RegisterWriteResult.QueueEnabled));
            Assert.That(_controller.ReadQueueSize(), Is.EqualTo(16));
        });
    }

    [Test]
    public void Queue_NoSuchQueue_WritesAreRefusedAndReadsZero()
    {
        _controller.WriteQueueSelect(2);

        Assert.Multiple(() =>
        {
            Assert.That(_controller.SelectedQueueIndex, Is.EqualTo(-1));
            Assert.That(_controller.WriteQueueSize(4), Is.EqualTo(RegisterWriteResult.NoSuchQueue));
            Assert.That(_controller.EnableQueue(out _), Is.EqualTo(RegisterWriteResult.NoSuchQueue));
            Assert.That(_controller.DisableQueue(), Is.EqualTo(RegisterWriteResult.NoSuchQueue));
            Assert.That(_controller.ReadQueueSizeMax(), Is.Zero);
            Assert.That(_controller.Status, Is.EqualTo((DeviceStatus)0));
        });
    }

    [Test]
    public void QueueReset_RequiresRingResetAndTheValueOne()
    {
        Negotiate(VirtioFeatures.Version1);
        SetupQueue(0);
        Assert.That(_controller.WriteQueueReset(1), Is.EqualTo(RegisterWriteResult.FeatureNotNegotiated));

        _controller.WriteStatus(0);
        Negotiate();
        SetupQueue(0);
        Assert.Multiple(() =>
        {
            Assert.That(_controller.WriteQueueReset(0), Is.EqualTo(RegisterWriteResult.InvalidValue));
            Assert.That(_controller.ReadQueueEnable(), Is.True);
            Assert.That(_controller.WriteQueueReset(1), Is.EqualTo(RegisterWriteResult.Accepted));
            Assert.That(_controller.ReadQueueEnable(), Is.False);
        });
    }

    [Test]
    public void Notify_BeforeLiveOrForADisabledQueue_IsDroppedAndCounted()
    {
        Negotiate();
        SetupQueue(0);

        Assert.Multiple(() =>
        {
            Assert.That(_controller.Notify(0), Is.False);
            Assert.That(_controller.Notify(-1), Is.False);
            Assert.That(_controller.Notify(99), Is.False);
            Assert.That(_controller.DroppedNotifications, Is.EqualTo(3));
            Assert.That(_device.Notifies, Is.Zero);
        });

        _controller.WriteStatus((byte)Live);
        Assert.Multiple(() =>
        {
            Assert.That(_device.Notifies, Is.EqualTo(1), "the early kick is replayed once live");
            Assert.That(_controller.Notify(1), Is.False, "queue 1 is not enabled");
            Assert.That(_controller.Notify(0), Is.True);
        });
    }

    [Test]
    public void Signals_RaisedInsideActivate_AreDeliveredAfterTheLockIsReleased()
    {
        Negotiate();
        SetupQueue(0);
        _device.OnActivate = context =>
        {
            context.SignalUsedBuffers(0);
            context.SignalConfigChange();
        };
        bool otherThreadGotTheLock = false;
        _signals.OnSignal = () =>
        {
            // Another thread takes the control lock: this only completes if we do not hold it.
            var probe = Task.Run(() => _controller.QueueSelect);
            otherThreadGotTheLock = probe.Wait(TimeSpan.FromSeconds(10));
        };

        _controller.WriteStatus((byte)Live);

        Assert.Multiple(() =>
        {
            Assert.That(_signals.UsedSignals, Is.EqualTo(1));
            Assert.That(_signals.ConfigSignals, Is.EqualTo(1));
            Assert.That(otherThreadGotTheLock, Is.True);
        });
    }

    [Test]
    public void Session_AfterReset_ItsSignalsAreDroppedAndCounted()
    {
        BringUp();
        IVirtioDeviceContext stale = _device.Context!;
        _controller.WriteStatus(0);
        BringUp();

        stale.SignalUsedBuffers(0);
        stale.SignalConfigChange();
        stale.SetNeedsReset();

        Assert.Multiple(() =>
        {
            Assert.That(_signals.UsedSignals + _signals.ConfigSignals, Is.Zero);
            Assert.That(_controller.DroppedSignals, Is.EqualTo(3));
            Assert.That(_controller.Status, Is.EqualTo(Live));
        });
    }

    [Test]
    public void SetNeedsReset_WhileLive_SetsTheBitOnceAndSendsOneConfigNotification()
    {
        BringUp();

        _device.Context!.SetNeedsReset();
        _device.Context.SetNeedsReset();

        Assert.Multiple(() =>
        {
            Assert.That(_controller.Status, Is.EqualTo(Live | DeviceStatus.DeviceNeedsReset));
            Assert.That(_signals.ConfigSignals, Is.EqualTo(1));
        });
    }

    [Test]
    public void Notify_KicksRacingWithResets_NeverReachAResetDevice()
    {
        using var stop = new CancellationTokenSource();
        int running = 0;
        var kickers = new Thread[2];
        for (int i = 0; i < kickers.Length; i++)
        {
            kickers[i] = new Thread(() =>
            {
                Interlocked.Increment(ref running);
                while (!stop.IsCancellationRequested)
                {
                    _controller.Notify(0);
                }
            });
            kickers[i].Start();
        }

        SpinWait.SpinUntil(() => Volatile.Read(ref running) == kickers.Length);
        var deadline = DateTime.UtcNow.AddSeconds(20);
        int rounds = 0;
        while (rounds < 300 || (_device.Notifies < 100 && DateTime.UtcNow < deadline))
        {
            BringUp();
            Thread.Yield();
            _controller.WriteStatus(0);
            rounds++;
        }

        stop.Cancel();
        foreach (Thread kicker in kickers)
        {
            kicker.Join();
        }

        Assert.Multiple(() =>
        {
            Assert.That(_device.NotifiesWhileDown, Is.Zero);
            Assert.That(_device.Notifies, Is.Positive, "some kicks reached the live device");
            Assert.That(_controller.DroppedNotifications, Is.Positive, "some kicks found it reset");
        });
    }

    // The post-access step (issue 12): a host callback the device runs there may reset this very
    // controller on the writing thread, because the register lock is no longer held.
    [Test]
    public void TryWriteDeviceConfig_PostAccessStep_RunsAfterTheWriteWithTheLockReleased_AndMayResetTheController()
    {
        Negotiate();
        _controller.WriteStatus((byte)Live);
        int resets = _device.Resets;
        bool otherThreadGotTheLock = false;
        _device.OnAfterConfigWrite = () =>
        {
            // Another thread takes the control lock: this only completes if we do not hold it.
            var probe = Task.Run(() => _controller.QueueSelect);
            otherThreadGotTheLock = probe.Wait(TimeSpan.FromSeconds(10));
            _controller.Reset();
        };

        bool written = _controller.TryWriteDeviceConfig(0, [1]);

        Assert.Multiple(() =>
        {
            Assert.That(written, Is.True);
            Assert.That(_device.Calls, Is.EqualTo(new[] { "WriteConfig", "AfterConfigWrite" }));
            Assert.That(otherThreadGotTheLock, Is.True);
            Assert.That(_device.Resets, Is.EqualTo(resets + 1));
            Assert.That(_controller.Status, Is.EqualTo((DeviceStatus)0), "the reset from the post-access step completed");
        });
    }

    [Test]
    public void TryWriteDeviceConfig_OutOfBounds_HasNoPostAccessStep()
    {
        Assert.That(_controller.TryWriteDeviceConfig(4, [1]), Is.False);
        Assert.That(_device.Calls, Is.Empty);
    }

    [Test]
    public void TryDeviceConfig_OutOfBounds_IsRefusedWithZeros()
    {
        byte[] data = [1, 2];

        Assert.Multiple(() =>
        {
            Assert.That(_controller.TryReadDeviceConfig(3, data), Is.False);
            Assert.That(data, Is.All.Zero);
            Assert.That(_controller.TryWriteDeviceConfig(uint.MaxValue, data), Is.False);
            Assert.That(_controller.TryReadDeviceConfig(2, data), Is.True);
            Assert.That(data, Is.All.EqualTo(0x5A));
        });
    }

    [Test]
    public void RestoreState_ValidSnapshot_RestoresQueuesAndReactivatesTheDevice()
    {
        SplitRingDriver ring = BringUp();
        byte[] snapshot = _controller.SaveState();

        var device = new ControllerTestDevice();
        var controller = new VirtioDeviceController(device, _memory, new RecordingSignals());
        Assert.That(controller.RestoreState(snapshot), Is.EqualTo(SnapshotStatus.Ok));

        Assert.Multiple(() =>
        {
            Assert.That(controller.Status, Is.EqualTo(Live));
            Assert.That(controller.NegotiatedFeatures, Is.EqualTo(Accepted));
            Assert.That(device.Context!.GetQueue(0).IsReady, Is.True);
            Assert.That(device.Context.GetQueue(0).Config, Is.EqualTo(ring.Config));
            Assert.That(device.Notifies, Is.EqualTo(1), "each enabled queue gets one kick after restore");
            Assert.That(controller.SaveState(), Is.EqualTo(snapshot));
        });
    }

    [Test]
    public void RestoreState_OnALiveDevice_QuiescesItInsteadOfAGuestReset()
    {
        // A restore is not a reset the guest asked for: the device must not see Reset (which would
        // publish reset events and disarm timers) but Quiesce, and is then re-activated.
        BringUp();
        byte[] snapshot = _controller.SaveState();
        int resetsBefore = _device.Resets;

        Assert.That(_controller.RestoreState(snapshot), Is.EqualTo(SnapshotStatus.Ok));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(_device.Resets, Is.EqualTo(resetsBefore));
            Assert.That(_device.Quiesces, Is.EqualTo(1));
            Assert.That(_device.Context, Is.Not.Null, "re-activated after the restore");
        }
    }

    [TestCase(StatusOffset, (byte)(DeviceStatus.DriverOk | DeviceStatus.Acknowledge), SnapshotStatus.InvalidState)]
    [TestCase(StatusOffset, (byte)0x20, SnapshotStatus.InvalidState)]
    [TestCase(StatusOffset, (byte)0x03, SnapshotStatus.InvalidState)]
    [TestCase(NegotiatedOffset, (byte)0x81, SnapshotStatus.InvalidState)]
    [TestCase(FirstQueueOffset, (byte)8, SnapshotStatus.DeviceMismatch)]
    [TestCase(4, (byte)2, SnapshotStatus.UnsupportedVersion)]
    [TestCase(0, (byte)0, SnapshotStatus.Malformed)]
    [TestCase(FirstQueueOffset + 28, (byte)2, SnapshotStatus.Malformed)]
    public void RestoreState_CorruptField_IsRefusedAndLeavesThePowerOnState(int offset, byte value, SnapshotStatus expected)
    {
        BringUp();
        byte[] snapshot = _controller.SaveState();
        snapshot[offset] = value;

        var device = new ControllerTestDevice();
        var controller = new VirtioDeviceController(device, _memory, new RecordingSignals());

        Assert.Multiple(() =>
        {
            Assert.That(controller.RestoreState(snapshot), Is.EqualTo(expected));
            Assert.That(controller.Status, Is.EqualTo((DeviceStatus)0));
            Assert.That(device.Context, Is.Null);
        });
    }

    [Test]
    public void RestoreState_EnabledQueueWithoutFeaturesOk_IsRefused()
    {
        Negotiate();
        SetupQueue(0);
        byte[] snapshot = _controller.SaveState();
        snapshot[StatusOffset] = (byte)AckDriver;
        Array.Clear(snapshot, NegotiatedOffset, 8);

        Assert.That(new VirtioDeviceController(new ControllerTestDevice(), _memory, _signals).RestoreState(snapshot), Is.EqualTo(SnapshotStatus.InvalidState));
    }

    [Test]
    public void RestoreState_RingOutsideGuestMemory_IsRefusedByTheQueueEngine()
    {
        BringUp();
        byte[] snapshot = _controller.SaveState();
        snapshot[FirstQueueOffset + 4 + 7] = 0x10;   // descriptor area far beyond guest memory

        Assert.That(new VirtioDeviceController(new ControllerTestDevice(), _memory, _signals).RestoreState(snapshot), Is.EqualTo(SnapshotStatus.QueueRestoreFailed));
    }

    [Test]
    public void RestoreState_TrailingBytes_AreMalformed()
    {
        byte[] snapshot = [.. _controller.SaveState(), 0];

        Assert.That(_controller.RestoreState(snapshot), Is.EqualTo(SnapshotStatus.Malformed));
        Assert.That(QueueRecordLength * _controller.QueueCount + FirstQueueOffset, Is.EqualTo(snapshot.Length - 1), "offsets used by these tests match the format");
    }

    private void WriteFeatures(ulong features)
    {
        _controller.WriteDriverFeatureSelect(0);
        _controller.WriteDriverFeatures((uint)features);
        _controller.WriteDriverFeatureSelect(1);
        _controller.WriteDriverFeatures((uint)(features >> 32));
    }

    private void Negotiate(ulong features = Accepted)
    {
        _controller.WriteStatus(0);
        _controller.WriteStatus((byte)AckDriver);
        WriteFeatures(features);
        Assert.That(_controller.WriteStatus((byte)FeaturesOk), Is.EqualTo(DeviceStatusWriteResult.Accepted));
    }

    private SplitRingDriver SetupQueue(uint queue)
    {
        SplitRingDriver ring = SplitRingDriver.Allocate(_allocator, 16, eventIndex: false);
        _controller.WriteQueueSelect(queue);
        _controller.WriteQueueSize(16);
        _controller.WriteQueueAddress(VirtqueueArea.Descriptor, high: false, (uint)ring.Config.DescriptorArea);
        _controller.WriteQueueAddress(VirtqueueArea.Driver, high: false, (uint)ring.Config.DriverArea);
        _controller.WriteQueueAddress(VirtqueueArea.Device, high: false, (uint)ring.Config.DeviceArea);
        Assert.That(_controller.EnableQueue(out VirtqueueStatus status), Is.EqualTo(RegisterWriteResult.Accepted), status.ToString());
        return ring;
    }

    private SplitRingDriver BringUp()
    {
        Negotiate();
        SplitRingDriver ring = SetupQueue(0);
        Assert.That(_controller.WriteStatus((byte)Live), Is.EqualTo(DeviceStatusWriteResult.Activated));
        return ring;
    }

    private void Bring(VirtioDeviceController controller)
    {
        controller.WriteStatus((byte)AckDriver);
        controller.WriteDriverFeatureSelect(1);
        controller.WriteDriverFeatures((uint)(VirtioFeatures.Version1 >> 32));
        controller.WriteStatus((byte)FeaturesOk);
        controller.WriteStatus((byte)Live);
    }
}
