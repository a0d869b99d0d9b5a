using VirtioPanic.GuestDriver.Rings;
using System.Buffers.Binary;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;
using Cap = VirtioPanic.Transport.Pci.VirtioPciCapabilityRegisters;
using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;

namespace VirtioPanic.Transport.Tests.Pci;

// The PCI configuration access window (virtio 1.2 §4.1.4.9 "PCI configuration access capability").
public sealed partial class VirtioPciFunctionTests
{
    private uint WindowData => (uint)_driver.PciConfigCapability + Cap.PciConfigData;

    private void AimWindow(byte bar, uint offset, uint length)
    {
        _driver.WriteCfg8((uint)_driver.PciConfigCapability + Cap.Bar, bar);
        _driver.WriteCfg32((uint)_driver.PciConfigCapability + Cap.Offset, offset);
        _driver.WriteCfg32((uint)_driver.PciConfigCapability + Cap.Length, length);
    }

    [Test]
    public void ConfigWindow_FourByteRead_ReadsTheBar()
    {
        _driver.WriteMem32(_driver.CommonConfig + Common.DeviceFeatureSelect, 1);
        AimWindow(0, Common.DeviceFeature, 4);

        Assert.That(_driver.Cfg32(WindowData), Is.EqualTo(_driver.Mem32(_driver.CommonConfig + Common.DeviceFeature)));
    }

    [Test]
    public void ConfigWindow_TwoByteRead_ReadsNumQueues()
    {
        AimWindow(0, Common.NumQueues, 2);

        Assert.That(_driver.Cfg16(WindowData), Is.EqualTo(2));
    }

    [Test]
    public void ConfigWindow_OneByteWrites_DriveTheStatusMachine()
    {
        AimWindow(0, Common.DeviceStatus, 1);

        _driver.WriteCfg8(WindowData, (byte)DeviceStatus.Acknowledge);
        _driver.WriteCfg8(WindowData, (byte)(DeviceStatus.Acknowledge | DeviceStatus.Driver));

        Assert.Multiple(() =>
        {
            Assert.That(_driver.ReadStatus(), Is.EqualTo(DeviceStatus.Acknowledge | DeviceStatus.Driver));
            Assert.That(_driver.Cfg8(WindowData), Is.EqualTo((byte)(DeviceStatus.Acknowledge | DeviceStatus.Driver)));
        });
    }

    [Test]
    public void ConfigWindow_WorksWithMemoryDecodingOff()
    {
        _driver.WriteCfg16(PciConfigRegisters.Command, 0);
        AimWindow(0, Common.QueueSize, 2);

        Assert.That(_driver.Cfg16(WindowData), Is.EqualTo(16));
    }

    [Test]
    public void ConfigWindow_IsrRead_ClearsTheIsrAsADirectReadDoes()
    {
        SplitRingDriver ring = BringUp();
        PublishAndKick(ring);
        AimWindow(0, (uint)_driver.Isr - (uint)PciTestDriver.VirtioBarAddress, 1);

        byte first = _driver.Cfg8(WindowData);
        byte second = _driver.Cfg8(WindowData);

        Assert.Multiple(() =>
        {
            Assert.That(first, Is.EqualTo(1));
            Assert.That(second, Is.Zero);
            Assert.That(_sink.Level, Is.False);
        });
    }

    [Test]
    public void ConfigWindow_MsixBar_ReadsTheTable()
    {
        _driver.ProgramVector(1, 0xFEE0_0000, 0x41, masked: true);
        AimWindow(2, 16 + MsixRegisters.EntryData, 4);

        Assert.That(_driver.Cfg32(WindowData), Is.EqualTo(0x41u));
    }

    [TestCase((byte)0, 0u, 3u)]
    [TestCase((byte)0, 0u, 8u)]
    [TestCase((byte)5, 0u, 4u)]
    [TestCase((byte)0, 0x3FFEu, 4u)]
    [TestCase((byte)0, 0xFFFF_FFFEu, 4u)]
    public void ConfigWindow_Misconfigured_ReadsZerosAndCounts(byte bar, uint offset, uint length)
    {
        AimWindow(bar, offset, length);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.Cfg32(WindowData), Is.Zero);
            Assert.That(_function.InvalidAccessCount, Is.EqualTo(1));
        });
        _driver.WriteCfg32(WindowData, 0xFFFF_FFFF);
        Assert.That(_function.InvalidAccessCount, Is.EqualTo(2));
    }

    [Test]
    public void ConfigWindow_NeverAimed_ReadsZeroWithoutComplaint()
    {
        byte[] dump = new byte[4];
        for (uint offset = 0; offset < VirtioPciFunction.ConfigSpaceSize; offset += 4)
        {
            _function.ReadConfig(offset, dump);
        }

        Assert.Multiple(() =>
        {
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(dump), Is.Zero);
            Assert.That(_function.InvalidAccessCount, Is.Zero, "a full configuration dump (lspci -xxx) is not a guest mistake");
        });
    }
}
