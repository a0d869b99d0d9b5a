using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;
using VirtioPanic.Transport.Pci;

namespace VirtioPanic.Transport.Tests.Pci;

public sealed partial class VirtioPciFunctionTests
{
    [TestCase(0, 0x4000UL)]
    [TestCase(2, 0x2000UL)]
    public void Bar_SizingProtocol_ReportsA64BitPowerOfTwoWindow(int bar, ulong expectedSize)
    {
        uint low = (uint)(PciConfigRegisters.Bar0 + (4 * bar));
        _driver.WriteCfg32(low, uint.MaxValue);
        _driver.WriteCfg32(low + 4, uint.MaxValue);

        uint lowValue = _driver.Cfg32(low);
        uint highValue = _driver.Cfg32(low + 4);
        ulong size = ~((((ulong)highValue) << 32) | (lowValue & ~0xFu)) + 1;

        Assert.Multiple(() =>
        {
            Assert.That(lowValue & 0x7, Is.EqualTo(PciConfigRegisters.BarMemoryType64), "memory, 64-bit");
            Assert.That(lowValue & 0x8, Is.Zero, "not prefetchable (the ISR has read side effects)");
            Assert.That(size, Is.EqualTo(expectedSize));
            Assert.That(size & (size - 1), Is.Zero);
        });
    }

    [Test]
    public void Bar_HalvesWrittenIndependently_ComposeA64BitAddress()
    {
        _driver.WriteCfg16(PciConfigRegisters.Command, 0);
        _driver.WriteCfg32(PciConfigRegisters.Bar0 + 4, 0x1);
        _driver.WriteCfg32(PciConfigRegisters.Bar0, 0x8000_0000);

        Assert.That(_driver.BarAddress(0), Is.EqualTo(0x1_8000_0000UL));
    }

    [Test]
    public void Bar_UnimplementedBarsAndRom_ReadZeroAfterSizing()
    {
        foreach (uint offset in new uint[] { PciConfigRegisters.Bar0 + 16, PciConfigRegisters.Bar0 + 20, PciConfigRegisters.ExpansionRom })
        {
            _driver.WriteCfg32(offset, uint.MaxValue);
            Assert.That(_driver.Cfg32(offset), Is.Zero, $"offset 0x{offset:X}");
        }

        Assert.That(_function.InvalidAccessCount, Is.Zero, "probing absent BARs is normal, not a guest mistake");
    }

    [Test]
    public void BarChanged_MemoryDecodingToggled_ReportsBothBars()
    {
        var events = new List<PciBarChangedEventArgs>();
        _function.BarChanged += (_, e) => events.Add(e);

        _driver.WriteCfg16(PciConfigRegisters.Command, 0);

        Assert.That(events, Has.Count.EqualTo(2));
        Assert.Multiple(() =>
        {
            Assert.That(events[0].Previous, Is.EqualTo(new PciBarMapping(0, PciTestDriver.VirtioBarAddress, 0x4000, true)));
            Assert.That(events[0].Current, Is.EqualTo(new PciBarMapping(0, PciTestDriver.VirtioBarAddress, 0x4000, false)));
            Assert.That(events[1].Current, Is.EqualTo(new PciBarMapping(2, PciTestDriver.MsixBarAddress, 0x2000, false)));
        });

        events.Clear();
        _driver.WriteCfg16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemorySpace);
        Assert.That(events.Select(e => e.Current.IsEnabled), Is.EqualTo(new[] { true, true }));
    }

    [Test]
    public void BarChanged_BarMovedWhileDecoding_ReportsPreviousAndCurrentAddress()
    {
        var events = new List<PciBarChangedEventArgs>();
        _function.BarChanged += (_, e) => events.Add(e);

        _driver.WriteCfg32(PciConfigRegisters.Bar0, 0xD000_0000);

        Assert.That(events, Has.Count.EqualTo(1));
        Assert.Multiple(() =>
        {
            Assert.That(events[0].Previous.Address, Is.EqualTo(PciTestDriver.VirtioBarAddress));
            Assert.That(events[0].Current.Address, Is.EqualTo(0xD000_0000UL));
            Assert.That(_function.TryReadMemory(0xD000_0000 + Common.NumQueues, new byte[2]), Is.True);
            Assert.That(_function.TryReadMemory(PciTestDriver.VirtioBarAddress, new byte[4]), Is.False);
        });
    }

    [Test]
    public void TryReadMemory_DecodingOff_ClaimsNothing()
    {
        _driver.WriteCfg16(PciConfigRegisters.Command, 0);

        Assert.Multiple(() =>
        {
            Assert.That(_function.TryReadMemory(PciTestDriver.VirtioBarAddress, new byte[4]), Is.False);
            Assert.That(_function.TryWriteMemory(PciTestDriver.MsixBarAddress, new byte[4]), Is.False);
            Assert.That(_function.GetDoorbells(), Is.Empty);
        });
    }

    [Test]
    public void ReadBar_WorksWithoutAnAssignedAddress()
    {
        _function.Reset();
        byte[] data = new byte[2];

        _function.ReadBar(0, Common.NumQueues, data);

        Assert.That(BitConverter.ToUInt16(data), Is.EqualTo(2));
    }

    [Test]
    public void GetDoorbells_AfterAssignment_ListOneAddressPerQueue()
    {
        VirtioDoorbell[] doorbells = _function.GetDoorbells();

        Assert.That(doorbells, Has.Length.EqualTo(2));
        Assert.Multiple(() =>
        {
            Assert.That(doorbells[0], Is.EqualTo(new VirtioDoorbell(_driver.NotifyBase, 2, 0)));
            Assert.That(doorbells[1], Is.EqualTo(new VirtioDoorbell(_driver.NotifyBase + _driver.NotifyMultiplier, 2, 1)));
        });
    }

    [Test]
    public void Doorbell_WrittenAtItsAddress_KicksTheQueue()
    {
        BringUp();
        VirtioDoorbell doorbell = _function.GetDoorbells()[0];

        Assert.That(_function.TryWriteMemory(doorbell.Address, [0, 0]), Is.True);
        Assert.That(_function.NotifyQueue(0), Is.True);

        Assert.That(_device.NotifyCount(0), Is.EqualTo(2));
    }

    [Test]
    public void Doorbell_WrongWidthOrOtherQueueIndex_IsRefusedAndCounted()
    {
        BringUp();
        ulong doorbell = _function.GetDoorbells()[0].Address;

        _function.TryWriteMemory(doorbell, [0, 0, 0, 0]);
        _function.TryWriteMemory(doorbell, [1, 0]);
        _function.TryWriteMemory(doorbell + 2, [0, 0]);

        Assert.Multiple(() =>
        {
            Assert.That(_device.NotifyCount(0), Is.Zero);
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.WrongWidth), Is.EqualTo(1));
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.Rejected), Is.EqualTo(1));
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.Misaligned), Is.EqualTo(1));
        });
    }

    [Test]
    public void Reset_Function_UnassignsBarsAndReportsDecodingOff()
    {
        var events = new List<PciBarChangedEventArgs>();
        _function.BarChanged += (_, e) => events.Add(e);

        _function.Reset();

        Assert.Multiple(() =>
        {
            Assert.That(_driver.Cfg16(PciConfigRegisters.Command), Is.Zero);
            Assert.That(_driver.BarAddress(0), Is.Zero);
            Assert.That(events.Select(e => e.Current.IsEnabled), Is.All.False);
        });
    }
}
