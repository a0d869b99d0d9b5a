using CsCheck;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using ILogger = Microsoft.Extensions.Logging.ILogger;

namespace VirtioPanic.Transport.Tests;

// The behaviour every virtio transport must share, run against PCI and MMIO (style.md §5.19).
// A guest driver (ITransportDriver) initializes the device the way Linux does, with rings from
// the GuestDriver harness, and the fake device completes buffers synchronously on a kick.
public abstract class TransportContractTests
{
    private const DeviceStatus Ack = DeviceStatus.Acknowledge;
    private const DeviceStatus AckDriver = DeviceStatus.Acknowledge | DeviceStatus.Driver;
    private const DeviceStatus FeaturesOk = AckDriver | DeviceStatus.FeaturesOk;
    private const DeviceStatus Live = FeaturesOk | DeviceStatus.DriverOk;
    private const ulong DefaultFeatures = VirtioFeatures.Version1 | VirtioFeatures.EventIndex | VirtioFeatures.RingReset;

    private protected GuestMemory Memory { get; private set; } = null!;

    private protected GuestAllocator Allocator { get; private set; } = null!;

    private protected FakeDevice Device { get; private set; } = null!;

    private protected RecordingInterruptSink Sink { get; private set; } = null!;

    private protected ITransportDriver Driver { get; private set; } = null!;

    [SetUp]
    public void SetUpTransport()
    {
        Memory = GuestMemory.CreateAnonymous(16 << 20);
        Allocator = new GuestAllocator(Memory, 0x1_0000, 8 << 20);
        Device = new FakeDevice();
        Sink = new RecordingInterruptSink();
        Driver = CreateDriver(Device, Memory, Sink);
    }

    [TearDown]
    public void TearDownTransport() => Memory.Dispose();

    [Test]
    public void Initialize_StandardSequence_ReachesDriverOkAndActivatesDevice()
    {
        Initialize();
        SetupQueue(0, 16);
        Driver.WriteStatus(Live);

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadStatus(), Is.EqualTo(Live));
            Assert.That(Device.ActivateCount, Is.EqualTo(1));
            Assert.That(Device.Context!.NegotiatedFeatures, Is.EqualTo(DefaultFeatures));
            Assert.That(Device.Context.GetQueue(0).IsReady, Is.True);
            Assert.That(Device.Context.GetQueue(1).IsReady, Is.False);
            Assert.That(Driver.InvalidAccessCount, Is.Zero);
        });
    }

    [Test]
    public void DeviceFeatures_EachWindow_ShowsOfferedBitsAndZeroBeyondBit63()
    {
        Driver.WriteStatus(0);
        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadDeviceFeatures(0), Is.EqualTo((uint)(FakeDevice.FeatureTimeout | VirtioFeatures.EventIndex | VirtioFeatures.IndirectDescriptors)));
            Assert.That(Driver.ReadDeviceFeatures(1), Is.EqualTo((uint)((VirtioFeatures.Version1 | VirtioFeatures.RingReset) >> 32)));
            Assert.That(Driver.ReadDeviceFeatures(2), Is.Zero);
            Assert.That(Driver.ReadDeviceFeatures(0xFFFF_FFFF), Is.Zero);
        });
    }

    [Test]
    public void FeaturesOk_DriverAcceptsUnofferedFeature_DoesNotStick()
    {
        Initialize(DefaultFeatures | FakeDevice.FeatureUnoffered, expectAccepted: false);

        Assert.That(Driver.ReadStatus(), Is.EqualTo(AckDriver));
    }

    [Test]
    public void FeaturesOk_WithoutVersion1_DoesNotStick()
    {
        Initialize(VirtioFeatures.EventIndex, expectAccepted: false);

        Assert.That(Driver.ReadStatus() & DeviceStatus.FeaturesOk, Is.EqualTo((DeviceStatus)0));
    }

    [Test]
    public void FeaturesOk_DeviceRefusesSubset_DoesNotStick()
    {
        Device.AcceptAll = false;

        Initialize(DefaultFeatures, expectAccepted: false);

        Assert.That(Driver.ReadStatus(), Is.EqualTo(AckDriver));
    }

    [Test]
    public void FeaturesOk_AfterRefusalAndReset_CanBeRenegotiated()
    {
        Initialize(DefaultFeatures | FakeDevice.FeatureUnoffered, expectAccepted: false);
        Driver.WriteStatus(0);

        Initialize();

        Assert.That(Driver.ReadStatus(), Is.EqualTo(FeaturesOk));
    }

    [Test]
    public void DriverFeatures_WrittenAfterFeaturesOk_AreIgnored()
    {
        Initialize();
        long before = Driver.InvalidAccessCount;

        Driver.WriteDriverFeatures(0, (uint)VirtioFeatures.IndirectDescriptors);

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadDriverFeatures(0), Is.EqualTo(unchecked((uint)DefaultFeatures)));
            Assert.That(Driver.InvalidAccessCount, Is.EqualTo(before + 1));
        });
    }

    [Test]
    public void DriverOk_WithoutFeaturesOk_DoesNotStick()
    {
        Driver.WriteStatus(0);
        Driver.WriteStatus(Ack);
        Driver.WriteStatus(AckDriver);

        Driver.WriteStatus(AckDriver | DeviceStatus.DriverOk);

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadStatus(), Is.EqualTo(AckDriver));
            Assert.That(Device.ActivateCount, Is.Zero);
            Assert.That(Driver.InvalidAccessCount, Is.EqualTo(1));
        });
    }

    [Test]
    public void StatusWrite_ClearingABit_IsIgnored()
    {
        Initialize();

        Driver.WriteStatus(Ack | DeviceStatus.FeaturesOk);

        Assert.That(Driver.ReadStatus(), Is.EqualTo(FeaturesOk));
    }

    [Test]
    public void QueueSetup_ValidRing_QueueReadsEnabled()
    {
        Initialize();

        SetupQueue(1, 8);

        Driver.SelectQueue(1);
        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadQueueReady(), Is.True);
            Assert.That(Driver.ReadStatus() & DeviceStatus.DeviceNeedsReset, Is.EqualTo((DeviceStatus)0));
        });
    }

    [Test]
    public void QueueSetup_SizeNotAPowerOfTwo_SetsNeedsResetAndQueueStaysDisabled()
    {
        Initialize();
        SplitRingDriver ring = SplitRingDriver.Allocate(Allocator, 16, eventIndex: true);
        Driver.SelectQueue(0);
        Driver.WriteQueueSize(12);
        Driver.WriteQueueAddresses(ring.Config.DescriptorArea, ring.Config.DriverArea, ring.Config.DeviceArea);

        Driver.WriteQueueReady(1);

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadQueueReady(), Is.False);
            Assert.That(Driver.ReadStatus() & DeviceStatus.DeviceNeedsReset, Is.EqualTo(DeviceStatus.DeviceNeedsReset));
        });
    }

    [Test]
    public void QueueSetup_RingOutsideGuestMemory_SetsNeedsReset()
    {
        Initialize();
        Driver.SelectQueue(0);
        Driver.WriteQueueSize(16);
        Driver.WriteQueueAddresses(0x10_0000_0000, 0x10_0001_0000, 0x10_0002_0000);

        Driver.WriteQueueReady(1);

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadQueueReady(), Is.False);
            Assert.That(Driver.ReadStatus() & DeviceStatus.DeviceNeedsReset, Is.EqualTo(DeviceStatus.DeviceNeedsReset));
        });
    }

    [Test]
    public void QueueSetup_BeforeFeaturesOk_SetsNeedsReset()
    {
        Driver.WriteStatus(0);
        Driver.WriteStatus(AckDriver);
        SplitRingDriver ring = SplitRingDriver.Allocate(Allocator, 16, eventIndex: false);
        Driver.SelectQueue(0);
        Driver.WriteQueueAddresses(ring.Config.DescriptorArea, ring.Config.DriverArea, ring.Config.DeviceArea);

        Driver.WriteQueueReady(1);

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadQueueReady(), Is.False);
            Assert.That(Driver.ReadStatus() & DeviceStatus.DeviceNeedsReset, Is.EqualTo(DeviceStatus.DeviceNeedsReset));
        });
    }

    [Test]
    public void QueueSelect_OutOfRange_ReadsZeroAndChangesNothing()
    {
        Initialize();
        Driver.SelectQueue(7);

        Driver.WriteQueueSize(4);
        Driver.WriteQueueReady(1);

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadQueueSizeMax(), Is.Zero);
            Assert.That(Driver.ReadQueueReady(), Is.False);
            Assert.That(Driver.ReadStatus(), Is.EqualTo(FeaturesOk));
        });
        Driver.SelectQueue(0);
        Assert.That(Driver.ReadQueueSizeMax(), Is.EqualTo(16));
    }

    [Test]
    public void QueueFields_WrittenWhileEnabled_AreIgnored()
    {
        Initialize();
        SplitRingDriver ring = SetupQueue(0, 16);
        Driver.WriteStatus(Live);
        long before = Driver.InvalidAccessCount;

        Driver.SelectQueue(0);
        Driver.WriteQueueSize(4);
        Driver.WriteQueueAddresses(0, 0, 0);

        Assert.That(Driver.InvalidAccessCount, Is.EqualTo(before + 7));
        AssertRoundTrip(ring, 0);
    }

    [Test]
    public void Notify_EnabledQueue_ReachesDeviceAndCompletesTheBuffer()
    {
        SplitRingDriver ring = BringUp();

        AssertRoundTrip(ring, 0);

        Assert.That(Device.NotifyCount(0), Is.EqualTo(1));
    }

    [Test]
    public void Notify_ManyBuffers_EveryOneCompletesOnce()
    {
        SplitRingDriver ring = BringUp();
        var seen = new HashSet<ushort>();

        for (int round = 0; round < 100; round++)
        {
            ulong buffer = Allocator.Allocate(64);
            Assert.That(ring.TryAdd([new DriverBuffer(buffer, 64, DeviceWritable: true)], out ushort head), Is.True);
            ring.Publish();
            Driver.Kick(0);
            Assert.That(ring.TryGetUsed(out UsedBuffer used), Is.EqualTo(UsedBufferStatus.Ok));
            Assert.That(used.Id, Is.EqualTo(head));
            seen.Add(used.Id);
        }

        Assert.Multiple(() =>
        {
            Assert.That(Device.CompletedChains, Is.EqualTo(100));
            Assert.That(ring.InFlightCount, Is.Zero);
        });
    }

    [Test]
    public void Notify_DisabledQueue_IsDroppedAndCounted()
    {
        BringUp();

        Driver.Kick(1);
        Driver.Kick(9);

        Assert.Multiple(() =>
        {
            Assert.That(Device.NotifyCount(1), Is.Zero);
            Assert.That(Device.NotifyCount(0), Is.Zero);
            Assert.That(Driver.DroppedNotifications + Driver.InvalidAccessCount, Is.EqualTo(2));
        });
    }

    [Test]
    public void Notify_BeforeDriverOk_IsReplayedWhenTheDeviceGoesLive()
    {
        Initialize();
        SplitRingDriver ring = SetupQueue(0, 16);
        ulong buffer = Allocator.Allocate(16);
        ring.TryAdd([new DriverBuffer(buffer, 16, DeviceWritable: true)], out _);
        ring.Publish();
        Driver.Kick(0);
        Assert.That(Device.NotifyCount(0), Is.Zero);

        Driver.WriteStatus(Live);

        Assert.Multiple(() =>
        {
            Assert.That(Device.NotifyCount(0), Is.EqualTo(1));
            Assert.That(ring.TryGetUsed(out _), Is.EqualTo(UsedBufferStatus.Ok));
        });
    }

    [Test]
    public void UsedBufferInterrupt_LineStaysAssertedUntilTheDriverAcknowledges()
    {
        SplitRingDriver ring = BringUp();
        ulong buffer = Allocator.Allocate(16);
        ring.TryAdd([new DriverBuffer(buffer, 16, DeviceWritable: true)], out _);
        ring.Publish();

        Driver.Kick(0);

        Assert.That(Sink.Level, Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(Driver.TakeInterrupt() & 1, Is.EqualTo(1u));
            Assert.That(Sink.Level, Is.False);
            Assert.That(Driver.TakeInterrupt(), Is.Zero);
        });
    }

    [Test]
    public void ConfigChange_MovesTheGenerationAndRaisesAConfigInterrupt()
    {
        BringUp();
        uint before = Driver.ReadConfigGeneration();

        Device.ChangeConfig();

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadConfigGeneration(), Is.Not.EqualTo(before));
            Assert.That(Driver.ReadConfig32(4), Is.EqualTo(1u));
            Assert.That(Sink.Level, Is.True);
            Assert.That(Driver.TakeInterrupt() & 2, Is.EqualTo(2u));
            Assert.That(Sink.Level, Is.False);
        });
    }

    [Test]
    public void ConfigGeneration_ManyChangesBetweenTwoReads_StillDiffers()
    {
        BringUp();
        uint before = Driver.ReadConfigGeneration();

        // 256 changes would wrap an 8-bit counter bumped per change back to the same value.
        for (int i = 0; i < 256; i++)
        {
            Device.ChangeConfig();
        }

        uint after = Driver.ReadConfigGeneration();
        Assert.Multiple(() =>
        {
            Assert.That(after, Is.Not.EqualTo(before));
            Assert.That(Driver.ReadConfigGeneration(), Is.EqualTo(after), "stable while nothing changes");
        });
    }

    [Test]
    public void DeviceConfig_ReadAndWrite_ReachTheDevice()
    {
        Initialize();

        Driver.WriteConfig32(0, 30);
        Driver.WriteConfig32(4, 99);   // read-only field: the device ignores it

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadConfig32(0), Is.EqualTo(30u));
            Assert.That(Driver.ReadConfig32(4), Is.Zero);
        });
    }

    [Test]
    public void DeviceNeedsReset_SetByTheDevice_ShowsInStatusAndSendsAConfigInterrupt()
    {
        BringUp();

        Device.Context!.SetNeedsReset();

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadStatus(), Is.EqualTo(Live | DeviceStatus.DeviceNeedsReset));
            Assert.That(Driver.TakeInterrupt() & 2, Is.EqualTo(2u));
        });
    }

    // Issue 19: a device that throws never throws into the hypervisor's exit handler. The transport
    // contains it as DEVICE_NEEDS_RESET, with the configuration-change interrupt once the driver is
    // live (virtio 1.2 §2.1.2), and counts it.
    [Test]
    public void DeviceThrowsFromNotify_ContainedAsNeedsResetWithAConfigInterrupt_AndTheDriverCanResetAndReinitialize()
    {
        SplitRingDriver ring = BringUp();
        Driver.TakeInterrupt();
        Device.ThrowFrom = nameof(FakeDevice.Notify);
        Assert.That(ring.TryAdd([new DriverBuffer(Allocator.Allocate(16), 16, DeviceWritable: true)], out _), Is.True);
        ring.Publish();

        Assert.That(() => Driver.Kick(0), Throws.Nothing);
        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadStatus(), Is.EqualTo(Live | DeviceStatus.DeviceNeedsReset));
            Assert.That(Driver.TakeInterrupt() & 2, Is.EqualTo(2u), "configuration-change interrupt");
            Assert.That(Driver.DeviceFaults, Is.EqualTo(1));
        });

        Device.ThrowFrom = null;
        SplitRingDriver fresh = BringUp();
        AssertRoundTrip(fresh, 0);
    }

    [TestCase(nameof(FakeDevice.ReadConfig), TestName = "DeviceThrowsFromReadConfig_ReadsZeros_NeedsReset_NothingThrown")]
    [TestCase(nameof(FakeDevice.WriteConfig), TestName = "DeviceThrowsFromWriteConfig_Dropped_NeedsReset_NothingThrown")]
    public void DeviceThrowsFromAConfigAccess_ContainedAsNeedsReset(string member)
    {
        BringUp();
        Driver.WriteConfig32(0, 0x1234);
        Driver.TakeInterrupt();
        Device.ThrowFrom = member;

        uint value = 0xFFFF_FFFF;
        Assert.That(() => value = member == nameof(FakeDevice.ReadConfig) ? Driver.ReadConfig32(0) : WriteThenZero(), Throws.Nothing);
        Assert.Multiple(() =>
        {
            Assert.That(value, Is.Zero, "a failed read reads zeros");
            Assert.That(Driver.ReadStatus() & DeviceStatus.DeviceNeedsReset, Is.EqualTo(DeviceStatus.DeviceNeedsReset));
            Assert.That(Driver.TakeInterrupt() & 2, Is.EqualTo(2u));
            Assert.That(Driver.DeviceFaults, Is.EqualTo(1));
        });

        uint WriteThenZero()
        {
            Driver.WriteConfig32(0, 0x5678);
            return 0;
        }
    }

    [Test]
    public void DeviceThrowsFromAcceptFeatures_FeaturesOkRefused_NeedsResetWithoutInterrupt()
    {
        Device.ThrowFrom = nameof(FakeDevice.AcceptFeatures);

        Assert.That(() => Initialize(expectAccepted: false), Throws.Nothing);
        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadStatus(), Is.EqualTo(AckDriver | DeviceStatus.DeviceNeedsReset));
            Assert.That(Driver.TakeInterrupt(), Is.Zero, "no configuration interrupt before DRIVER_OK (§2.1.2)");
            Assert.That(Driver.DeviceFaults, Is.EqualTo(1));
        });
    }

    [Test]
    public void DeviceThrowsFromActivate_NotLive_NeedsResetWithAConfigInterrupt_KicksDropped()
    {
        Initialize();
        SplitRingDriver ring = SetupQueue(0, 16);
        Device.ThrowFrom = nameof(FakeDevice.Activate);

        Assert.That(() => Driver.WriteStatus(Live), Throws.Nothing);
        Device.ThrowFrom = null;
        Assert.That(ring.TryAdd([new DriverBuffer(Allocator.Allocate(16), 16, DeviceWritable: true)], out _), Is.True);
        ring.Publish();
        Driver.Kick(0);

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadStatus(), Is.EqualTo(Live | DeviceStatus.DeviceNeedsReset));
            Assert.That(Driver.TakeInterrupt() & 2, Is.EqualTo(2u));
            Assert.That(Device.NotifyCount(0), Is.Zero, "a device whose activation failed gets no kicks");
            Assert.That(Driver.DeviceFaults, Is.EqualTo(1));
        });
    }

    [TestCase(nameof(FakeDevice.Reset), TestName = "DeviceThrowsFromReset_TheResetStillCompletes")]
    [TestCase(nameof(FakeDevice.ResetQueue), TestName = "DeviceThrowsFromResetQueue_TheQueueResetStillCompletes")]
    public void DeviceThrowsFromAReset_TheResetCompletes(string member)
    {
        BringUp();
        Device.ThrowFrom = member;

        if (member == nameof(FakeDevice.Reset))
        {
            Assert.That(() => Driver.WriteStatus(0), Throws.Nothing);
            Assert.That(Driver.ReadStatus(), Is.EqualTo((DeviceStatus)0));
        }
        else
        {
            Driver.SelectQueue(0);
            Assert.That(() => Driver.WriteQueueReset(), Throws.Nothing);
            Assert.That(Driver.ReadQueueReady(), Is.False);
        }

        Device.ThrowFrom = null;
        Assert.That(Driver.DeviceFaults, Is.EqualTo(1));
        SplitRingDriver ring = BringUp();
        AssertRoundTrip(ring, 0);
    }

    [Test]
    public void DeviceFaults_AreLoggedOnceAsErrors()
    {
        var logger = new FakeLogger();
        ITransportDriver driver = CreateDriver(Device, Memory, Sink, logger);
        Device.ThrowFrom = nameof(FakeDevice.ReadConfig);

        for (int i = 0; i < 20; i++)
        {
            driver.ReadConfig32(0);
        }

        Assert.Multiple(() =>
        {
            Assert.That(driver.DeviceFaults, Is.EqualTo(20));
            Assert.That(logger.Collector.GetSnapshot().Count(r => r.Level == LogLevel.Error), Is.EqualTo(1));
        });
    }

    [Test]
    public void Reset_AfterIo_RestoresThePowerOnState()
    {
        SplitRingDriver ring = BringUp();
        AssertRoundTrip(ring, 0);
        IVirtioDeviceContext oldContext = Device.Context!;

        Driver.WriteStatus(0);

        Driver.SelectQueue(0);
        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadStatus(), Is.EqualTo((DeviceStatus)0));
            Assert.That(Device.ResetCount, Is.GreaterThanOrEqualTo(2));   // the driver's initial reset and this one
            Assert.That(Driver.ReadQueueReady(), Is.False);
            Assert.That(Driver.ReadQueueSizeMax(), Is.EqualTo(16));
            Assert.That(Driver.ReadDriverFeatures(0), Is.Zero);
            Assert.That(Sink.Level, Is.False);
            Assert.That(Driver.TakeInterrupt(), Is.Zero);
        });

        // The old session is inert: it cannot interrupt the next driver.
        oldContext.SignalConfigChange();
        Assert.That(Driver.TakeInterrupt(), Is.Zero);

        // And the function works again from scratch.
        SplitRingDriver again = BringUp();
        AssertRoundTrip(again, 0);
    }

    [Test]
    public void Reset_ByTheHost_RestoresThePowerOnState()
    {
        BringUp();

        Driver.HostReset();

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadStatus(), Is.EqualTo((DeviceStatus)0));
            Assert.That(Device.Context, Is.Null);
        });
    }

    [Test]
    public void QueueReset_WithRingReset_StopsTheQueueAndAllowsReEnableWithANewSize()
    {
        SplitRingDriver ring = BringUp();
        AssertRoundTrip(ring, 0);

        Driver.SelectQueue(0);
        Driver.WriteQueueReset();

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadQueueReset(), Is.Zero);
            Assert.That(Driver.ReadQueueReady(), Is.False);
            Assert.That(Device.QueueResets, Is.EqualTo(new[] { 0 }));
            Assert.That(Device.Context!.GetQueue(0).IsReady, Is.False);
        });

        SplitRingDriver smaller = SetupQueue(0, 4);
        Assert.That(Device.Context!.GetQueue(0).Size, Is.EqualTo(4));
        AssertRoundTrip(smaller, 0);
    }

    [Test]
    public void QueueReset_WithoutRingResetNegotiated_IsRejected()
    {
        Initialize(VirtioFeatures.Version1);
        SetupQueue(0, 16);
        Driver.WriteStatus(Live);
        long before = Driver.InvalidAccessCount;

        Driver.SelectQueue(0);
        Driver.WriteQueueReset();

        Assert.Multiple(() =>
        {
            Assert.That(Driver.ReadQueueReady(), Is.True);
            Assert.That(Driver.InvalidAccessCount, Is.EqualTo(before + 1));
        });
    }

    [Test]
    public void SaveRestore_MidIo_TheRestoredTransportContinuesWhereItStopped()
    {
        SplitRingDriver ring = BringUp();
        AssertRoundTrip(ring, 0);
        Device.ProcessOnNotify = false;
        ulong pending = Allocator.Allocate(32);
        ring.TryAdd([new DriverBuffer(pending, 32, DeviceWritable: true)], out ushort pendingHead);
        ring.Publish();
        Driver.Kick(0);
        Assert.That(ring.TryGetUsed(out _), Is.EqualTo(UsedBufferStatus.Empty));
        byte[] snapshot = Driver.Save();

        var device = new FakeDevice();
        var sink = new RecordingInterruptSink();
        ITransportDriver restored = Restore(snapshot, device, Memory, sink, out SnapshotStatus status);

        Assert.That(status, Is.EqualTo(SnapshotStatus.Ok));
        Assert.Multiple(() =>
        {
            Assert.That(restored.ReadStatus(), Is.EqualTo(Live));
            Assert.That(device.ActivateCount, Is.EqualTo(1));
            Assert.That(ring.TryGetUsed(out UsedBuffer used), Is.EqualTo(UsedBufferStatus.Ok), "the restored device picked up the published buffer");
            Assert.That(used.Id, Is.EqualTo(pendingHead));
            Assert.That(ring.TryGetUsed(out _), Is.EqualTo(UsedBufferStatus.Empty), "nothing completed twice");
        });
        Driver = restored;
        AssertRoundTrip(ring, 0);
    }

    [Test]
    public void Restore_TruncatedSnapshot_IsRefusedAndLeavesThePowerOnState()
    {
        BringUp();
        byte[] snapshot = Driver.Save();

        var device = new FakeDevice();
        ITransportDriver restored = Restore(snapshot[..^3], device, Memory, new RecordingInterruptSink(), out SnapshotStatus status);

        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(SnapshotStatus.Malformed));
            Assert.That(restored.ReadStatus(), Is.EqualTo((DeviceStatus)0));
            Assert.That(device.ActivateCount, Is.Zero);
        });
    }

    [Test]
    public void Restore_SnapshotOfADifferentDevice_IsRefused()
    {
        BringUp();
        byte[] snapshot = Driver.Save();

        var other = new FakeDevice(VirtioFeatures.EventIndex);
        Restore(snapshot, other, Memory, new RecordingInterruptSink(), out SnapshotStatus status);

        Assert.That(status, Is.EqualTo(SnapshotStatus.DeviceMismatch));
    }

    [Test]
    public void Restore_EveryFlippedByte_NeverThrowsAndYieldsAStatus()
    {
        SplitRingDriver ring = BringUp();
        AssertRoundTrip(ring, 0);
        byte[] snapshot = Driver.Save();
        var random = new Random(1234);

        for (int i = 0; i < snapshot.Length; i++)
        {
            byte[] corrupt = (byte[])snapshot.Clone();
            corrupt[i] ^= (byte)(1 << random.Next(8));
            var device = new FakeDevice();
            ITransportDriver restored = Restore(corrupt, device, Memory, new RecordingInterruptSink(), out SnapshotStatus status);
            if (status != SnapshotStatus.Ok)
            {
                Assert.That(restored.ReadStatus(), Is.EqualTo((DeviceStatus)0), $"byte {i}: refused snapshot must leave power-on state");
            }
        }
    }

    // Property (every layer returns a status for every bad snapshot and is never half-restored):
    // random bytes, every truncation of a real snapshot and mutations of it, restored into a live
    // transport that has done I/O. RestoreState never throws. A refused snapshot leaves exactly
    // the reset state a refusal is documented to leave, byte for byte (its SaveState equals that
    // of a transport that refused an empty image), so nothing the snapshot carried was half
    // applied. An accepted one is a state the transport stands by: its own SaveState restores again.
    [Test]
    public void Restore_RandomTruncatedOrMutatedSnapshot_IntoALiveTransport_NeverThrows_RefusedLeavesExactlyThePowerOnState()
    {
        SplitRingDriver ring = BringUp();
        AssertRoundTrip(ring, 0);
        byte[] valid = Driver.Save();
        int refused = 0;
        int accepted = 0;

        ITransportDriver Live()
        {
            ITransportDriver live = Restore(valid, new FakeDevice(), Memory, new RecordingInterruptSink(), out SnapshotStatus ready);
            Assert.That(ready, Is.EqualTo(SnapshotStatus.Ok));
            return live;
        }

        // What a refusal that applied nothing (no magic) leaves: the transport's reset state. (On
        // PCI that is not what the harness's firmware set up at creation: the BARs are unassigned.)
        ITransportDriver reference = Live();
        Assert.That(reference.Restore([]), Is.EqualTo(SnapshotStatus.Malformed));
        byte[] powerOn = reference.Save();

        void Check(byte[] image, bool mustRefuse)
        {
            ITransportDriver live = Live();
            SnapshotStatus status = live.Restore(image);
            if (status == SnapshotStatus.Ok)
            {
                Assert.That(mustRefuse, Is.False, $"a {image.Length}-byte truncation of a {valid.Length}-byte snapshot was accepted");
                accepted++;
                Restore(live.Save(), new FakeDevice(), Memory, new RecordingInterruptSink(), out SnapshotStatus again);
                Assert.That(again, Is.EqualTo(SnapshotStatus.Ok), "an accepted snapshot's own SaveState restores again");
                return;
            }

            refused++;
            Assert.That(live.Save(), Is.EqualTo(powerOn), $"refused ({status}): exactly the state a refusal leaves, nothing of the image applied");
        }

        for (int length = 0; length < valid.Length; length++)
        {
            Check(valid[..length], mustRefuse: true);
        }

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
        Gen.OneOf(random, mutated).Sample(image => Check(image, mustRefuse: false), iter: 400, threads: 1);

        Assert.Multiple(() =>
        {
            Assert.That(refused, Is.GreaterThan(valid.Length), "the truncations and most random images were refused");
            Assert.That(accepted, Is.GreaterThan(0), "some mutations are benign and restore");
        });
    }

    private protected abstract ITransportDriver CreateDriver(FakeDevice device, GuestMemory memory, RecordingInterruptSink sink, ILogger? logger = null);

    private protected abstract ITransportDriver Restore(byte[] snapshot, FakeDevice device, GuestMemory memory, RecordingInterruptSink sink, out SnapshotStatus status);

    // Reset, ACKNOWLEDGE, DRIVER, feature negotiation, FEATURES_OK and its read-back (§3.1.1).
    private protected void Initialize(ulong accept = DefaultFeatures, bool expectAccepted = true)
    {
        Driver.WriteStatus(0);
        Assert.That(Driver.ReadStatus(), Is.EqualTo((DeviceStatus)0));
        Driver.WriteStatus(Ack);
        Driver.WriteStatus(AckDriver);
        Driver.WriteDriverFeatures(0, (uint)accept);
        Driver.WriteDriverFeatures(1, (uint)(accept >> 32));
        Driver.WriteStatus(FeaturesOk);
        bool accepted = (Driver.ReadStatus() & DeviceStatus.FeaturesOk) != 0;
        Assert.That(accepted, Is.EqualTo(expectAccepted));
    }

    private protected SplitRingDriver SetupQueue(int queue, ushort size, bool eventIndex = true)
    {
        Driver.SelectQueue((uint)queue);
        Assert.That(Driver.ReadQueueReady(), Is.False);
        Assert.That(size, Is.LessThanOrEqualTo(Driver.ReadQueueSizeMax()));
        SplitRingDriver ring = SplitRingDriver.Allocate(Allocator, size, eventIndex);
        Driver.WriteQueueSize(size);
        Driver.WriteQueueAddresses(ring.Config.DescriptorArea, ring.Config.DriverArea, ring.Config.DeviceArea);
        Driver.WriteQueueReady(1);
        Assert.That(Driver.ReadQueueReady(), Is.True);
        return ring;
    }

    private protected SplitRingDriver BringUp()
    {
        Initialize();
        SplitRingDriver ring = SetupQueue(0, 16);
        Driver.WriteStatus(Live);
        Assert.That(Driver.ReadStatus(), Is.EqualTo(Live));
        return ring;
    }

    // One writable buffer out and back: the device fills it with 0xAB and completes it.
    private protected void AssertRoundTrip(SplitRingDriver ring, int queue)
    {
        ulong buffer = Allocator.Allocate(16);
        Assert.That(ring.TryAdd([new DriverBuffer(buffer, 16, DeviceWritable: true)], out ushort head), Is.True);
        ring.Publish();
        if (ring.NeedsKick())
        {
            Driver.Kick(queue);
        }

        Assert.That(ring.TryGetUsed(out UsedBuffer used), Is.EqualTo(UsedBufferStatus.Ok));
        byte[] written = new byte[16];
        Assert.That(Memory.TryRead(buffer, written), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(used.Id, Is.EqualTo(head));
            Assert.That(used.Length, Is.EqualTo(16u));
            Assert.That(written, Is.All.EqualTo((byte)0xAB));
        });
    }
}
