using VirtioPanic.Transport.Pci;
using VirtioPanic.Transport.Tests.Fakes;

namespace VirtioPanic.Transport.Tests.Pci;

public sealed partial class VirtioPciFunctionTests
{
    [Test]
    public void ReadConfig_Header_IdentifiesAModernVirtioFunction()
    {
        Assert.Multiple(() =>
        {
            Assert.That(_driver.Cfg16(PciConfigRegisters.VendorId), Is.EqualTo(0x1AF4));
            Assert.That(_driver.Cfg16(PciConfigRegisters.DeviceId), Is.EqualTo(0x1040 + 35));
            Assert.That(_function.DeviceId, Is.EqualTo(0x1063));
            Assert.That(_driver.Cfg8(PciConfigRegisters.RevisionId), Is.GreaterThanOrEqualTo(1));
            Assert.That(_driver.Cfg32(PciConfigRegisters.RevisionId) >> 8, Is.EqualTo(0x088000u), "class code");
            Assert.That(_driver.Cfg8(PciConfigRegisters.HeaderType), Is.Zero);
            Assert.That(_driver.Cfg16(PciConfigRegisters.SubsystemVendorId), Is.EqualTo(0x1AF4));
            Assert.That(_driver.Cfg16(PciConfigRegisters.SubsystemId), Is.GreaterThanOrEqualTo(0x40));
            Assert.That(_driver.Cfg16(PciConfigRegisters.Status) & PciConfigRegisters.StatusCapabilityList, Is.Not.Zero);
            Assert.That(_driver.Cfg8(PciConfigRegisters.CapabilitiesPointer), Is.EqualTo(0x40));
            Assert.That(_driver.Cfg8(PciConfigRegisters.InterruptPin), Is.EqualTo(1));
        });
    }

    [Test]
    public void ReadConfig_CustomOptions_ShowClassSubsystemAndRevision()
    {
        var function = new VirtioPciFunction(_device, _memory, _sink, new VirtioPciFunctionOptions
        {
            ClassCode = 0x0C0340,
            SubsystemVendorId = 0x1234,
            SubsystemId = 0x5678,
            RevisionId = 3,
        });
        var driver = new PciTestDriver(function, _sink);

        Assert.Multiple(() =>
        {
            Assert.That(driver.Cfg32(PciConfigRegisters.RevisionId), Is.EqualTo(0x0C034003u));
            Assert.That(driver.Cfg16(PciConfigRegisters.SubsystemVendorId), Is.EqualTo(0x1234));
            Assert.That(driver.Cfg16(PciConfigRegisters.SubsystemId), Is.EqualTo(0x5678));
        });
    }

    [Test]
    public void WriteConfig_Command_OnlyMemoryBusMasterAndIntxDisableStick()
    {
        _driver.WriteCfg16(PciConfigRegisters.Command, 0xFFFF);

        Assert.That(_driver.Cfg16(PciConfigRegisters.Command), Is.EqualTo(0x0406));
    }

    [Test]
    public void WriteConfig_StatusWithAllOnes_SetsNothing()
    {
        _driver.WriteCfg16(PciConfigRegisters.Status, 0xFFFF);

        Assert.That(_driver.Cfg16(PciConfigRegisters.Status), Is.EqualTo(PciConfigRegisters.StatusCapabilityList));
    }

    [Test]
    public void WriteConfig_ReadOnlyRegister_IsDroppedAndCounted()
    {
        _driver.WriteCfg16(PciConfigRegisters.VendorId, 0x1234);
        _driver.WriteCfg8(PciConfigRegisters.CapabilitiesPointer, 0x80);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.Cfg16(PciConfigRegisters.VendorId), Is.EqualTo(0x1AF4));
            Assert.That(_driver.Cfg8(PciConfigRegisters.CapabilitiesPointer), Is.EqualTo(0x40));
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.ReadOnly), Is.EqualTo(2));
        });
    }

    [Test]
    public void WriteConfig_ScratchRegisters_AreReadWrite()
    {
        _driver.WriteCfg8(PciConfigRegisters.CacheLineSize, 0x10);
        _driver.WriteCfg8(PciConfigRegisters.InterruptLine, 11);

        Assert.Multiple(() =>
        {
            Assert.That(_driver.Cfg8(PciConfigRegisters.CacheLineSize), Is.EqualTo(0x10));
            Assert.That(_driver.Cfg8(PciConfigRegisters.InterruptLine), Is.EqualTo(11));
            Assert.That(_driver.Cfg8(PciConfigRegisters.InterruptPin), Is.EqualTo(1));
        });
    }

    [TestCase(0u, 3, InvalidAccessKind.WrongWidth)]
    [TestCase(0u, 8, InvalidAccessKind.WrongWidth)]
    [TestCase(2u, 4, InvalidAccessKind.Misaligned)]
    [TestCase(1u, 2, InvalidAccessKind.Misaligned)]
    [TestCase(256u, 4, InvalidAccessKind.OutOfRange)]
    [TestCase(0xFFFF_FFFCu, 4, InvalidAccessKind.OutOfRange)]
    public void ReadConfig_InvalidAccess_ReadsZerosAndIsCounted(uint offset, int width, InvalidAccessKind kind)
    {
        byte[] data = new byte[width];
        data.AsSpan().Fill(0xCC);

        _function.ReadConfig(offset, data);
        _function.WriteConfig(offset, data);

        Assert.Multiple(() =>
        {
            Assert.That(data, Is.All.Zero);
            Assert.That(_function.GetInvalidAccessCount(kind), Is.EqualTo(2));
            Assert.That(_driver.Cfg16(PciConfigRegisters.VendorId), Is.EqualTo(0x1AF4));
        });
    }

    [Test]
    public void Capabilities_WalkedFromThePointerAsLinuxDoes_DescribeEveryStructureInsideBar0()
    {
        var seen = new List<byte>();
        ulong barSize = _function.GetBarMappings()[0].Size;
        int guard = 48;
        for (int at = _driver.Cfg8(PciConfigRegisters.CapabilitiesPointer); at != 0; at = _driver.Cfg8((uint)at + 1))
        {
            Assert.That(guard--, Is.Positive, "capability list must terminate");
            Assert.That(at, Is.InRange(0x40, 0xFC));
            Assert.That(at % 4, Is.Zero, "capabilities are dword-aligned");
            if (_driver.Cfg8((uint)at) != PciConfigRegisters.CapabilityIdVendorSpecific)
            {
                continue;
            }

            byte type = _driver.Cfg8((uint)at + VirtioPciCapabilityRegisters.ConfigType);
            byte length = _driver.Cfg8((uint)at + VirtioPciCapabilityRegisters.CapLength);
            seen.Add(type);
            if (type == VirtioPciCapabilityRegisters.TypePciConfig)
            {
                Assert.That(length, Is.EqualTo(20));
                continue;
            }

            uint offset = _driver.Cfg32((uint)at + VirtioPciCapabilityRegisters.Offset);
            uint size = _driver.Cfg32((uint)at + VirtioPciCapabilityRegisters.Length);
            Assert.Multiple(() =>
            {
                Assert.That(_driver.Cfg8((uint)at + VirtioPciCapabilityRegisters.Bar), Is.Zero);
                Assert.That(size, Is.Positive);
                Assert.That((ulong)offset + size, Is.LessThanOrEqualTo(barSize), "structure inside its BAR");
                Assert.That(length, Is.EqualTo(type == VirtioPciCapabilityRegisters.TypeNotifyConfig ? 20 : 16));
            });
            switch (type)
            {
                case VirtioPciCapabilityRegisters.TypeCommonConfig:
                    Assert.That(offset % 4, Is.Zero);
                    Assert.That(size, Is.GreaterThanOrEqualTo(60u));
                    break;
                case VirtioPciCapabilityRegisters.TypeNotifyConfig:
                    uint multiplier = _driver.Cfg32((uint)at + VirtioPciCapabilityRegisters.NotifyOffMultiplier);
                    Assert.That(multiplier % 2, Is.Zero, "even power of two (§4.1.4.4.1)");
                    Assert.That(size, Is.GreaterThanOrEqualTo(((uint)(_device.QueueCount - 1) * multiplier) + 2));
                    break;
                case VirtioPciCapabilityRegisters.TypeDeviceConfig:
                    Assert.That(offset % 4, Is.Zero);
                    Assert.That(size, Is.EqualTo(8u));
                    break;
            }
        }

        Assert.That(seen, Is.EqualTo(new byte[] { 1, 2, 3, 4, 5 }), "common, notify, ISR, device, PCI_CFG, once each");
    }

    [Test]
    public void Capabilities_DeviceWithoutConfiguration_HasNoDeviceCapability()
    {
        var function = new VirtioPciFunction(new FakeDevice(configSize: 0), _memory, _sink);
        var driver = new PciTestDriver(function, _sink);

        Assert.Multiple(() =>
        {
            Assert.That(driver.DeviceConfig, Is.Zero);
            Assert.That(driver.CommonConfig, Is.Not.Zero);
            Assert.That(driver.PciConfigCapability, Is.Not.Zero);
            Assert.That(driver.MsixCapability, Is.Not.Zero);
        });
    }

    [Test]
    public void Capabilities_Msix_TableSizeAndLocationsAreConsistent()
    {
        int cap = _driver.MsixCapability;
        ushort control = _driver.Cfg16((uint)cap + MsixRegisters.MessageControl);
        uint table = _driver.Cfg32((uint)cap + MsixRegisters.TableOffset);
        uint pba = _driver.Cfg32((uint)cap + MsixRegisters.PbaOffset);

        Assert.Multiple(() =>
        {
            Assert.That((control & MsixRegisters.TableSizeMask) + 1, Is.EqualTo(_device.QueueCount + 1));
            Assert.That(control & (MsixRegisters.Enable | MsixRegisters.FunctionMask), Is.Zero);
            Assert.That(table & 7, Is.EqualTo(2u), "table in BAR 2");
            Assert.That(pba & 7, Is.EqualTo(2u), "PBA in BAR 2");
            Assert.That(pba & ~7u, Is.GreaterThanOrEqualTo((table & ~7u) + (uint)(16 * _function.MsixVectorCount)));
        });
    }
}
