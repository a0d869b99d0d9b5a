using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Device;
using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;

namespace VirtioPanic.Transport.Tests.Pci;

public sealed partial class VirtioPciFunctionTests
{
    // Offsets in the PCI snapshot: magic(4) version(2) config(256) bar0(8) bar2(8).
    private const int SnapshotConfig = 6;
    private const int SnapshotBar0 = SnapshotConfig + 256;

    [Test]
    public void SaveRestore_KeepsBarsMsixTablePendingBitsAndVectors()
    {
        for (int v = 0; v < _function.MsixVectorCount; v++)
        {
            _driver.ProgramVector(v, 0xFEE0_0000 + (ulong)(v * 16), (uint)v, masked: true);
        }

        _driver.SetMsixControl(enabled: true, functionMasked: false);
        SplitRingDriver ring = BringUp(vector: 2);
        PublishAndKick(ring);
        Assert.That(Pending(2), Is.True);
        byte[] snapshot = _function.SaveState();

        var sink = new RecordingInterruptSink();
        var restored = new VirtioPciFunction(new FakeDevice(), _memory, sink);
        var events = new List<PciBarChangedEventArgs>();
        restored.BarChanged += (_, e) => events.Add(e);
        Assert.That(restored.RestoreState(snapshot), Is.EqualTo(SnapshotStatus.Ok));
        var driver = new PciTestDriver(restored, sink, programFirmware: false);

        driver.SelectQueue(0);
        Assert.Multiple(() =>
        {
            Assert.That(events.Select(e => e.Current), Is.EqualTo(new[]
            {
                new PciBarMapping(0, PciTestDriver.VirtioBarAddress, 0x4000, true),
                new PciBarMapping(2, PciTestDriver.MsixBarAddress, 0x2000, true),
            }));
            Assert.That(driver.Mem16(driver.CommonConfig + Common.QueueMsixVector), Is.EqualTo(2));
            Assert.That(driver.Mem32(driver.MsixTable + 32 + MsixRegisters.EntryData), Is.EqualTo(2u));
            Assert.That((driver.Mem64(driver.MsixPba) & 4) != 0, Is.True, "pending bit survives");
            Assert.That(driver.Cfg16(PciConfigRegisters.Command), Is.EqualTo(PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster));
        });

        driver.MaskVector(2, masked: false);
        Assert.That(sink.Messages, Is.EqualTo(new[] { (0xFEE0_0020UL, 2u) }));
    }

    [Test]
    public void Restore_SnapshotOfAFunctionWithAnotherClass_IsRefused()
    {
        byte[] snapshot = _function.SaveState();
        var other = new VirtioPciFunction(new FakeDevice(), _memory, _sink, new VirtioPciFunctionOptions { ClassCode = 0x010000 });

        Assert.That(other.RestoreState(snapshot), Is.EqualTo(SnapshotStatus.DeviceMismatch));
    }

    [Test]
    public void Restore_MisalignedBarAddress_IsRefused()
    {
        byte[] snapshot = _function.SaveState();
        snapshot[SnapshotBar0] |= 0x10;

        var restored = new VirtioPciFunction(new FakeDevice(), _memory, _sink);

        Assert.Multiple(() =>
        {
            Assert.That(restored.RestoreState(snapshot), Is.EqualTo(SnapshotStatus.InvalidState));
            Assert.That(restored.GetBarMappings()[0].Address, Is.Zero);
        });
    }

    [Test]
    public void Restore_WrongVersion_IsRefused()
    {
        byte[] snapshot = _function.SaveState();
        snapshot[4] = 9;

        Assert.That(new VirtioPciFunction(new FakeDevice(), _memory, _sink).RestoreState(snapshot), Is.EqualTo(SnapshotStatus.UnsupportedVersion));
    }
}
