using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using Regs = VirtioPanic.Transport.Mmio.VirtioMmioRegisters;

namespace VirtioPanic.Transport.Tests.Mmio;

// The virtio-mmio v2 register map (virtio 1.2 §4.2.2), register by register.
public sealed class VirtioMmioTransportTests
{
    private const DeviceStatus FeaturesOk = DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk;

    private static readonly int[] s_writeOnly =
    [
        Regs.DeviceFeaturesSel, Regs.DriverFeatures, Regs.DriverFeaturesSel, Regs.QueueSel, Regs.QueueSize,
        Regs.QueueNotify, Regs.InterruptAck, Regs.QueueDescLow, Regs.QueueDescHigh, Regs.QueueDriverLow,
        Regs.QueueDriverHigh, Regs.QueueDeviceLow, Regs.QueueDeviceHigh, Regs.ShmSel,
    ];

    private static readonly int[] s_readOnly =
    [
        Regs.MagicValue, Regs.Version, Regs.DeviceId, Regs.VendorId, Regs.DeviceFeatures, Regs.QueueSizeMax,
        Regs.InterruptStatus, Regs.ShmLenLow, Regs.ShmLenHigh, Regs.ShmBaseLow, Regs.ShmBaseHigh, Regs.ConfigGeneration,
    ];

    private GuestMemory _memory = null!;
    private GuestAllocator _allocator = null!;
    private FakeDevice _device = null!;
    private RecordingInterruptSink _sink = null!;
    private VirtioMmioTransport _mmio = null!;
    private MmioTestDriver _driver = null!;

    [SetUp]
    public void SetUp()
    {
        _memory = GuestMemory.CreateAnonymous(16 << 20);
        _allocator = new GuestAllocator(_memory, 0x1_0000, 8 << 20);
        _device = new FakeDevice();
        _sink = new RecordingInterruptSink();
        _mmio = new VirtioMmioTransport(_device, _memory, _sink, new VirtioMmioOptions { VendorId = 0x554D4551 });
        _driver = new MmioTestDriver(_mmio, _sink);
    }

    [TearDown]
    public void TearDown() => _memory.Dispose();

    [Test]
    public void Read_IdentificationRegisters_DescribeAVersion2Device()
    {
        Assert.Multiple(() =>
        {
            Assert.That(_driver.Read32(Regs.MagicValue), Is.EqualTo(0x74726976u));
            Assert.That(_driver.Read32(Regs.Version), Is.EqualTo(2u));
            Assert.That(_driver.Read32(Regs.DeviceId), Is.EqualTo(35u));
            Assert.That(_driver.Read32(Regs.VendorId), Is.EqualTo(0x554D4551u));
            Assert.That(_mmio.RegionSize, Is.EqualTo(0x200UL));
        });
    }

    [Test]
    public void Read_SharedMemoryRegisters_ReportNoRegion()
    {
        _driver.Write32(Regs.ShmSel, 0);

        Assert.That(
            new[] { Regs.ShmLenLow, Regs.ShmLenHigh, Regs.ShmBaseLow, Regs.ShmBaseHigh }.Select(r => _driver.Read32((ulong)r)),
            Is.All.EqualTo(uint.MaxValue));
    }

    [Test]
    public void Read_WriteOnlyRegisters_ReadZeroAndAreCounted()
    {
        foreach (int register in s_writeOnly)
        {
            Assert.That(_driver.Read32((ulong)register), Is.Zero, $"register 0x{register:X3}");
        }

        Assert.That(_mmio.GetInvalidAccessCount(InvalidAccessKind.WriteOnly), Is.EqualTo(s_writeOnly.Length));
    }

    [Test]
    public void Write_ReadOnlyRegisters_AreDroppedAndCounted()
    {
        foreach (int register in s_readOnly)
        {
            _driver.Write32((ulong)register, 0x1234_5678);
        }

        Assert.Multiple(() =>
        {
            Assert.That(_mmio.GetInvalidAccessCount(InvalidAccessKind.ReadOnly), Is.EqualTo(s_readOnly.Length));
            Assert.That(_driver.Read32(Regs.MagicValue), Is.EqualTo(Regs.Magic));
        });
    }

    [TestCase(0x028)]
    [TestCase(0x03C)]
    [TestCase(0x040)]
    [TestCase(0x0F8)]
    public void Access_LegacyOrUndefinedRegister_IsReserved(int register)
    {
        _driver.Write32((ulong)register, 1);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.Read32((ulong)register), Is.Zero);
            Assert.That(_mmio.GetInvalidAccessCount(InvalidAccessKind.Reserved), Is.EqualTo(2));
        });
    }

    [TestCase(Regs.MagicValue, 2, InvalidAccessKind.WrongWidth)]
    [TestCase(Regs.MagicValue, 8, InvalidAccessKind.WrongWidth)]
    [TestCase(Regs.MagicValue + 2, 4, InvalidAccessKind.Misaligned)]
    [TestCase(Regs.Status, 1, InvalidAccessKind.WrongWidth)]
    [TestCase(Regs.Config + 8, 1, InvalidAccessKind.OutOfRange)]
    [TestCase(Regs.Config + 4, 8, InvalidAccessKind.Misaligned)]
    [TestCase(Regs.Config, 3, InvalidAccessKind.WrongWidth)]
    [TestCase(0x1000, 4, InvalidAccessKind.OutOfRange)]
    public void Read_BadAccess_ReadsZerosAndIsCounted(int offset, int width, InvalidAccessKind kind)
    {
        byte[] data = new byte[width];
        data.AsSpan().Fill(0x77);

        _mmio.Read((ulong)offset, data);

        Assert.Multiple(() =>
        {
            Assert.That(data, Is.All.Zero);
            Assert.That(_mmio.GetInvalidAccessCount(kind), Is.EqualTo(1));
        });
    }

    [Test]
    public void Config_FieldWidths_ReachTheDevice()
    {
        _driver.WriteConfig32(0, 0x0102_0304);
        byte[] one = new byte[1];
        byte[] two = new byte[2];
        byte[] eight = new byte[8];

        _mmio.Read(Regs.Config + 3, one);
        _mmio.Read(Regs.Config + 2, two);
        _mmio.Read(Regs.Config, eight);

        Assert.Multiple(() =>
        {
            Assert.That(one[0], Is.EqualTo(0x01));
            Assert.That(BitConverter.ToUInt16(two), Is.EqualTo(0x0102));
            Assert.That(BitConverter.ToUInt64(eight), Is.EqualTo(0x0102_0304UL));
            Assert.That(_mmio.InvalidAccessCount, Is.Zero);
        });
    }

    [Test]
    public void QueueSizeMax_PerQueue_ReportsMaximumOrZeroForAbsentQueues()
    {
        _driver.SelectQueue(0);
        uint first = _driver.Read32(Regs.QueueSizeMax);
        _driver.SelectQueue(1);
        uint second = _driver.Read32(Regs.QueueSizeMax);
        _driver.SelectQueue(0x1_0000);
        uint absent = _driver.Read32(Regs.QueueSizeMax);

        Assert.Multiple(() =>
        {
            Assert.That(first, Is.EqualTo(16u));
            Assert.That(second, Is.EqualTo(8u));
            Assert.That(absent, Is.Zero);
        });
    }

    [Test]
    public void QueueReady_WrittenWithZero_StopsTheQueue()
    {
        SplitRingDriver ring = BringUp();

        _driver.SelectQueue(0);
        _driver.WriteQueueReady(0);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.ReadQueueReady(), Is.False);
            Assert.That(_device.QueueResets, Is.EqualTo(new[] { 0 }));
            Assert.That(_device.Context!.GetQueue(0).IsReady, Is.False);
        });
        _driver.Kick(0);
        Assert.That(ring.TryGetUsed(out _), Is.EqualTo(UsedBufferStatus.Empty));
    }

    [Test]
    public void QueueReady_OtherValue_IsRejected()
    {
        Negotiate();
        _driver.SelectQueue(0);

        _driver.WriteQueueReady(2);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.ReadQueueReady(), Is.False);
            Assert.That(_mmio.GetInvalidAccessCount(InvalidAccessKind.Rejected), Is.EqualTo(1));
        });
    }

    [Test]
    public void InterruptAck_ClearsOnlyAcknowledgedBitsAndReportsUndefinedOnes()
    {
        SplitRingDriver ring = BringUp();
        ring.TryAdd([new DriverBuffer(_allocator.Allocate(8), 8, DeviceWritable: true)], out _);
        ring.Publish();
        _driver.Kick(0);
        _device.ChangeConfig();
        Assert.That(_driver.Read32(Regs.InterruptStatus), Is.EqualTo(3u));

        _driver.Write32(Regs.InterruptAck, Regs.InterruptUsedBuffer | 0x80);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.Read32(Regs.InterruptStatus), Is.EqualTo(Regs.InterruptConfigChange));
            Assert.That(_sink.Level, Is.True);
            Assert.That(_mmio.GetInvalidAccessCount(InvalidAccessKind.Rejected), Is.EqualTo(1));
        });

        _driver.Write32(Regs.InterruptAck, Regs.InterruptConfigChange);
        Assert.That(_sink.Level, Is.False);
    }

    [Test]
    public void QueueNotify_ValueAbove16Bits_IsRefused()
    {
        BringUp();

        _driver.Write32(Regs.QueueNotify, 0x0001_0000);

        Assert.Multiple(() =>
        {
            Assert.That(_device.NotifyCount(0), Is.Zero);
            Assert.That(_mmio.GetInvalidAccessCount(InvalidAccessKind.Rejected), Is.EqualTo(1));
        });
    }

    [Test]
    public void Status_ValueAbove8Bits_IsRefused()
    {
        _driver.Write32(Regs.Status, 0x101);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.ReadStatus(), Is.EqualTo((DeviceStatus)0));
            Assert.That(_mmio.GetInvalidAccessCount(InvalidAccessKind.Rejected), Is.EqualTo(1));
        });
    }

    [Test]
    public void ConfigGeneration_Is32BitsAndMovesOncePerObservedChange()
    {
        BringUp();
        uint before = _driver.ReadConfigGeneration();

        _device.ChangeConfig();
        uint after = _driver.ReadConfigGeneration();
        _device.ChangeConfig();
        _device.ChangeConfig();

        Assert.Multiple(() =>
        {
            Assert.That(after, Is.EqualTo(before + 1));
            Assert.That(_driver.ReadConfigGeneration(), Is.EqualTo(after + 1));
        });
    }

    [Test]
    public void Reset_ClearsInterruptStatusAndDeassertsTheLine()
    {
        BringUp();
        _device.ChangeConfig();
        Assert.That(_sink.Level, Is.True);

        _driver.WriteStatus(0);

        Assert.Multiple(() =>
        {
            Assert.That(_mmio.InterruptStatus, Is.Zero);
            Assert.That(_sink.Level, Is.False);
            Assert.That(_mmio.InterruptLevel, Is.False);
        });
    }

    [TestCase(11)]
    [TestCase(12)]
    [TestCase(13)]
    public void RandomAccesses_WholeWindow_NeverThrowAndAResetRecovers(int seed)
    {
        var random = new Random(seed);
        int[] widths = [0, 1, 2, 3, 4, 5, 8, 16];
        BringUp();

        for (int i = 0; i < 20_000; i++)
        {
            byte[] data = new byte[widths[random.Next(widths.Length)]];
            random.NextBytes(data);
            ulong offset = random.Next(8) == 0 ? (ulong)random.NextInt64() : (ulong)random.Next(0, 0x220);
            if (random.Next(2) == 0)
            {
                _mmio.Write(offset, data);
            }
            else
            {
                _mmio.Read(offset, data);
            }
        }

        Assert.That(_mmio.InvalidAccessCount, Is.Positive);
        _driver.WriteStatus(0);
        SplitRingDriver ring = BringUp();
        ring.TryAdd([new DriverBuffer(_allocator.Allocate(8), 8, DeviceWritable: true)], out _);
        ring.Publish();
        _driver.Kick(0);
        Assert.That(ring.TryGetUsed(out _), Is.EqualTo(UsedBufferStatus.Ok));
    }

    private void Negotiate()
    {
        _driver.WriteStatus(0);
        _driver.WriteStatus(DeviceStatus.Acknowledge);
        _driver.WriteStatus(DeviceStatus.Acknowledge | DeviceStatus.Driver);
        _driver.WriteDriverFeatures(0, (uint)VirtioFeatures.EventIndex);
        _driver.WriteDriverFeatures(1, (uint)(VirtioFeatures.Version1 >> 32));
        _driver.WriteStatus(FeaturesOk);
        Assert.That(_driver.ReadStatus(), Is.EqualTo(FeaturesOk));
    }

    private SplitRingDriver BringUp()
    {
        Negotiate();
        SplitRingDriver ring = SplitRingDriver.Allocate(_allocator, 16, eventIndex: true);
        _driver.SelectQueue(0);
        _driver.WriteQueueSize(16);
        _driver.WriteQueueAddresses(ring.Config.DescriptorArea, ring.Config.DriverArea, ring.Config.DeviceArea);
        _driver.WriteQueueReady(1);
        _driver.WriteStatus(FeaturesOk | DeviceStatus.DriverOk);
        Assert.That(_device.ActivateCount, Is.Positive);
        return ring;
    }
}
