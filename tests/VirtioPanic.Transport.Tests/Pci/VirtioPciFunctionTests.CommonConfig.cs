using VirtioPanic.Virtio.Device;
using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;

namespace VirtioPanic.Transport.Tests.Pci;

// Every field of the common configuration structure (virtio 1.2 §4.1.4.3), at its width.
public sealed partial class VirtioPciFunctionTests
{
    private ulong CommonField(int offset) => _driver.CommonConfig + (ulong)offset;

    [Test]
    public void CommonConfig_FeatureSelects_ReadBackAsWritten()
    {
        _driver.WriteMem32(CommonField(Common.DeviceFeatureSelect), 1);
        _driver.WriteMem32(CommonField(Common.DriverFeatureSelect), 7);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.Mem32(CommonField(Common.DeviceFeatureSelect)), Is.EqualTo(1u));
            Assert.That(_driver.Mem32(CommonField(Common.DeviceFeature)), Is.EqualTo((uint)((VirtioFeatures.Version1 | VirtioFeatures.RingReset) >> 32)));
            Assert.That(_driver.Mem32(CommonField(Common.DriverFeatureSelect)), Is.EqualTo(7u));
        });
    }

    [Test]
    public void CommonConfig_DriverFeature_ReadsBackEvenUnofferedBits()
    {
        _driver.WriteDriverFeatures(0, 0xFFFF_FFFF);

        Assert.That(_driver.ReadDriverFeatures(0), Is.EqualTo(0xFFFF_FFFFu));
    }

    [Test]
    public void CommonConfig_DriverFeatureAboveBit63_NonZeroWriteIsRejected()
    {
        _driver.WriteDriverFeatures(2, 1);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.ReadDriverFeatures(2), Is.Zero);
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.Rejected), Is.EqualTo(1));
        });
    }

    [Test]
    public void CommonConfig_ConfigMsixVector_MapsValidVectorsAndReportsFailureAsNoVector()
    {
        _driver.WriteMem16(CommonField(Common.ConfigMsixVector), 2);
        ushort mapped = _driver.Mem16(CommonField(Common.ConfigMsixVector));
        _driver.WriteMem16(CommonField(Common.ConfigMsixVector), 3);   // table has 3 vectors: 0..2
        ushort refused = _driver.Mem16(CommonField(Common.ConfigMsixVector));

        Assert.Multiple(() =>
        {
            Assert.That(mapped, Is.EqualTo(2));
            Assert.That(refused, Is.EqualTo(Common.NoVector));
        });
    }

    [Test]
    public void CommonConfig_NumQueues_IsReadOnly()
    {
        _driver.WriteMem16(CommonField(Common.NumQueues), 9);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.Mem16(CommonField(Common.NumQueues)), Is.EqualTo(2));
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.ReadOnly), Is.EqualTo(1));
        });
    }

    [Test]
    public void CommonConfig_QueueFields_ReadBackPerSelectedQueue()
    {
        Negotiate();
        _driver.SelectQueue(1);
        _driver.WriteQueueSize(4);
        _driver.WriteMem16(CommonField(Common.QueueMsixVector), 1);
        _driver.WriteMem32(CommonField(Common.QueueDescLow), 0x1000);
        _driver.WriteMem32(CommonField(Common.QueueDescHigh), 0x2);
        _driver.WriteMem32(CommonField(Common.QueueDriverHigh), 0x3);
        _driver.WriteMem32(CommonField(Common.QueueDriverLow), 0x2000);
        _driver.WriteMem32(CommonField(Common.QueueDeviceLow), 0x3000);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.Mem16(CommonField(Common.QueueSelect)), Is.EqualTo(1));
            Assert.That(_driver.Mem16(CommonField(Common.QueueSize)), Is.EqualTo(4));
            Assert.That(_driver.Mem16(CommonField(Common.QueueMsixVector)), Is.EqualTo(1));
            Assert.That(_driver.Mem16(CommonField(Common.QueueEnable)), Is.Zero);
            Assert.That(_driver.Mem16(CommonField(Common.QueueNotifyOff)), Is.EqualTo(1));
            Assert.That(_driver.Mem32(CommonField(Common.QueueDescLow)), Is.EqualTo(0x1000u));
            Assert.That(_driver.Mem32(CommonField(Common.QueueDescHigh)), Is.EqualTo(0x2u));
            Assert.That(_driver.Mem32(CommonField(Common.QueueDriverLow)), Is.EqualTo(0x2000u));
            Assert.That(_driver.Mem32(CommonField(Common.QueueDriverHigh)), Is.EqualTo(0x3u));
            Assert.That(_driver.Mem32(CommonField(Common.QueueDeviceLow)), Is.EqualTo(0x3000u));
            Assert.That(_driver.Mem32(CommonField(Common.QueueDeviceHigh)), Is.Zero);
            Assert.That(_driver.Mem16(CommonField(Common.QueueNotifyData)), Is.Zero);
            Assert.That(_driver.Mem16(CommonField(Common.QueueReset)), Is.Zero);
            Assert.That(_driver.Mem16(CommonField(Common.AdminQueueIndex)), Is.Zero);
            Assert.That(_driver.Mem16(CommonField(Common.AdminQueueNum)), Is.Zero);
        });

        _driver.SelectQueue(0);
        Assert.Multiple(() =>
        {
            Assert.That(_driver.Mem16(CommonField(Common.QueueSize)), Is.EqualTo(16), "queue 0 untouched");
            Assert.That(_driver.Mem16(CommonField(Common.QueueMsixVector)), Is.EqualTo(Common.NoVector));
            Assert.That(_driver.Mem32(CommonField(Common.QueueDescLow)), Is.Zero);
        });
    }

    [Test]
    public void CommonConfig_QueueMsixVector_OutOfRangeQueue_ReadsZeroAndWriteIsRejected()
    {
        _driver.SelectQueue(5);

        _driver.WriteMem16(CommonField(Common.QueueMsixVector), 0);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.Mem16(CommonField(Common.QueueMsixVector)), Is.Zero);
            Assert.That(_driver.Mem16(CommonField(Common.QueueSize)), Is.Zero);
            Assert.That(_driver.Mem16(CommonField(Common.QueueNotifyOff)), Is.Zero);
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.Rejected), Is.EqualTo(1));
        });
    }

    [Test]
    public void CommonConfig_QueueEnableWrittenWithZero_IsRejected()
    {
        BringUp();

        _driver.WriteMem16(CommonField(Common.QueueEnable), 0);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.ReadQueueReady(), Is.True);
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.Rejected), Is.EqualTo(1));
        });
    }

    [Test]
    public void CommonConfig_ReadOnlyFields_WritesAreCounted()
    {
        _driver.WriteMem32(CommonField(Common.DeviceFeature), 0xFFFF_FFFF);
        _driver.WriteMem8(CommonField(Common.ConfigGeneration), 5);
        _driver.WriteMem16(CommonField(Common.QueueNotifyOff), 5);
        _driver.WriteMem16(CommonField(Common.QueueNotifyData), 5);

        Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.ReadOnly), Is.EqualTo(4));
    }

    [TestCase(Common.DeviceStatus, 2, InvalidAccessKind.WrongWidth)]
    [TestCase(Common.NumQueues, 4, InvalidAccessKind.Misaligned)]
    [TestCase(Common.QueueSelect, 1, InvalidAccessKind.WrongWidth)]
    [TestCase(Common.QueueDescLow, 8, InvalidAccessKind.WrongWidth)]
    [TestCase(Common.DeviceFeature, 2, InvalidAccessKind.WrongWidth)]
    [TestCase(Common.QueueSize + 1, 2, InvalidAccessKind.Misaligned)]
    public void CommonConfig_WrongAccess_ReadsZerosAndIsCounted(int offset, int width, InvalidAccessKind kind)
    {
        byte[] data = new byte[width];
        data.AsSpan().Fill(0xEE);

        Assert.That(_function.TryReadMemory(CommonField(offset), data), Is.True);

        Assert.Multiple(() =>
        {
            Assert.That(data, Is.All.Zero);
            Assert.That(_function.GetInvalidAccessCount(kind), Is.EqualTo(1));
        });
    }

    [Test]
    public void CommonConfig_DeviceStatusReset_ReadsZeroImmediately()
    {
        BringUp();

        _driver.WriteStatus(0);

        Assert.That(_driver.ReadStatus(), Is.EqualTo((DeviceStatus)0));
    }

    [Test]
    public void CommonConfig_ConfigGeneration_IsOneByteAndChangesOnConfigChange()
    {
        BringUp();
        byte before = _driver.Mem8(CommonField(Common.ConfigGeneration));

        _device.ChangeConfig();

        Assert.That(_driver.Mem8(CommonField(Common.ConfigGeneration)), Is.EqualTo((byte)(before + 1)));
    }

    [Test]
    public void DeviceConfig_FieldWidthsAndBounds_AreEnforced()
    {
        byte[] eight = new byte[8];
        byte[] three = new byte[3];

        _function.TryReadMemory(_driver.DeviceConfig, eight);
        _function.TryReadMemory(_driver.DeviceConfig + 8, new byte[1]);
        _function.TryReadMemory(_driver.DeviceConfig + 2, new byte[4]);
        _function.TryReadMemory(_driver.DeviceConfig, three);

        Assert.Multiple(() =>
        {
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.WrongWidth), Is.EqualTo(1));
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.Misaligned), Is.EqualTo(1));
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.Reserved), Is.EqualTo(1), "the byte past the device configuration");
        });
    }

    [Test]
    public void Isr_WriteOrWideRead_IsRefused()
    {
        _driver.WriteMem8(_driver.Isr, 3);
        _function.TryReadMemory(_driver.Isr, new byte[4]);

        Assert.Multiple(() =>
        {
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.ReadOnly), Is.EqualTo(1));
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.WrongWidth), Is.EqualTo(1));
        });
    }
}
