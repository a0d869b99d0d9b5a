using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Transport.Pci;
using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;

namespace VirtioPanic.Transport.Tests.Pci;

// MSI-X (PCI LB §6.8.2; virtio 1.2 §4.1.5.1.2) and INTx with the ISR (§4.1.4.5).
public sealed partial class VirtioPciFunctionTests
{
    private const ulong MsiAddress = 0xFEE0_1000;

    private SplitRingDriver BringUpWithMsix(ushort queueVector, bool vectorMasked)
    {
        for (int v = 0; v < _function.MsixVectorCount; v++)
        {
            _driver.ProgramVector(v, MsiAddress + (ulong)v, 0x30u + (uint)v, vectorMasked);
        }

        _driver.SetMsixControl(enabled: true, functionMasked: false);
        SplitRingDriver ring = BringUp(queueVector);   // resets first, which unmaps vectors
        _driver.WriteMem16(_driver.CommonConfig + Common.ConfigMsixVector, 0);
        return ring;
    }

    private bool Pending(int vector) => (_driver.Mem64(_driver.MsixPba) & (1UL << vector)) != 0;

    [Test]
    public void Msix_UnmaskedVector_DeliversTheProgrammedMessage()
    {
        SplitRingDriver ring = BringUpWithMsix(queueVector: 1, vectorMasked: false);

        PublishAndKick(ring);

        Assert.Multiple(() =>
        {
            Assert.That(_sink.Messages, Is.EqualTo(new[] { (MsiAddress + 1, 0x31u) }));
            Assert.That(_sink.Level, Is.False, "with MSI-X enabled INTx is never asserted");
            Assert.That(_driver.Cfg16(PciConfigRegisters.Status) & PciConfigRegisters.StatusInterrupt, Is.Zero);
        });
    }

    [Test]
    public void Msix_MaskedVector_SetsPendingAndDeliversOnUnmask()
    {
        SplitRingDriver ring = BringUpWithMsix(queueVector: 1, vectorMasked: true);

        PublishAndKick(ring);

        Assert.Multiple(() =>
        {
            Assert.That(_sink.Messages, Is.Empty);
            Assert.That(Pending(1), Is.True);
        });

        _driver.MaskVector(1, masked: false);

        Assert.Multiple(() =>
        {
            Assert.That(_sink.Messages, Is.EqualTo(new[] { (MsiAddress + 1, 0x31u) }));
            Assert.That(Pending(1), Is.False);
        });
    }

    [Test]
    public void Msix_FunctionMask_HoldsEveryVectorUntilCleared()
    {
        SplitRingDriver ring = BringUpWithMsix(queueVector: 1, vectorMasked: false);
        _driver.SetMsixControl(enabled: true, functionMasked: true);

        PublishAndKick(ring);
        _device.ChangeConfig();

        Assert.Multiple(() =>
        {
            Assert.That(_sink.Messages, Is.Empty);
            Assert.That(Pending(0) && Pending(1), Is.True);
        });

        _driver.SetMsixControl(enabled: true, functionMasked: false);

        Assert.That(_sink.Messages, Is.EquivalentTo(new[] { (MsiAddress, 0x30u), (MsiAddress + 1, 0x31u) }));
    }

    [Test]
    public void Msix_BusMasteringOff_HoldsMessagesUntilEnabled()
    {
        SplitRingDriver ring = BringUpWithMsix(queueVector: 1, vectorMasked: false);
        _driver.WriteCfg16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemorySpace);

        PublishAndKick(ring);
        Assert.That(_sink.Messages, Is.Empty);

        _driver.WriteCfg16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster);
        Assert.That(_sink.Messages, Has.Length.EqualTo(1));
    }

    [Test]
    public void Msix_QueueWithNoVector_RaisesNothing()
    {
        SplitRingDriver ring = BringUpWithMsix(queueVector: Common.NoVector, vectorMasked: false);

        PublishAndKick(ring);

        Assert.Multiple(() =>
        {
            Assert.That(ring.TryGetUsed(out _), Is.EqualTo(UsedBufferStatus.Ok));
            Assert.That(_sink.Messages, Is.Empty);
            Assert.That(_sink.Level, Is.False);
            Assert.That(_sink.LevelChanges, Is.Zero);
        });
    }

    [Test]
    public void Msix_ConfigChange_UsesTheConfigVectorAndSetsIsrBit1()
    {
        BringUpWithMsix(queueVector: 1, vectorMasked: false);

        _device.ChangeConfig();

        Assert.Multiple(() =>
        {
            Assert.That(_sink.Messages, Is.EqualTo(new[] { (MsiAddress, 0x30u) }));
            Assert.That(_driver.Mem8(_driver.Isr), Is.EqualTo(2));
        });
    }

    [Test]
    public void Msix_DeviceReset_UnmapsEveryVector()
    {
        BringUpWithMsix(queueVector: 1, vectorMasked: false);

        _driver.WriteStatus(0);

        _driver.SelectQueue(0);
        Assert.Multiple(() =>
        {
            Assert.That(_driver.Mem16(_driver.CommonConfig + Common.ConfigMsixVector), Is.EqualTo(Common.NoVector));
            Assert.That(_driver.Mem16(_driver.CommonConfig + Common.QueueMsixVector), Is.EqualTo(Common.NoVector));
        });
    }

    [Test]
    public void Msix_Table_ResetsMaskedAndKeepsReservedControlBitsZero()
    {
        ulong control = _driver.MsixTable + MsixRegisters.EntryVectorControl;
        uint initial = _driver.Mem32(control);

        _driver.WriteMem32(control, 0xFFFF_FFFE);

        Assert.Multiple(() =>
        {
            Assert.That(initial, Is.EqualTo(MsixRegisters.VectorMasked));
            Assert.That(_driver.Mem32(control), Is.Zero);
        });
    }

    [Test]
    public void Msix_TableQwordAccess_ReadsAddressHalves()
    {
        _driver.ProgramVector(2, 0x1_2345_6780, 7, masked: true);

        Assert.That(_driver.Mem64(_driver.MsixTable + 32), Is.EqualTo(0x1_2345_6780UL));
    }

    [Test]
    public void Msix_BadTableAndPbaAccesses_AreRefusedAndCounted()
    {
        _function.TryWriteMemory(_driver.MsixTable, [1, 2]);
        _function.TryWriteMemory(_driver.MsixTable + 2, [1, 2, 3, 4]);
        _function.TryWriteMemory(_driver.MsixPba, [1, 0, 0, 0]);
        _function.TryReadMemory(_driver.MsixTable + 0x800, new byte[4]);

        Assert.Multiple(() =>
        {
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.WrongWidth), Is.EqualTo(1));
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.Misaligned), Is.EqualTo(1));
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.ReadOnly), Is.EqualTo(1));
            Assert.That(_function.GetInvalidAccessCount(InvalidAccessKind.Reserved), Is.EqualTo(1));
            Assert.That(_driver.Mem64(_driver.MsixPba), Is.Zero);
        });
    }

    [Test]
    public void Intx_UsedBuffer_AssertsLineAndStatusBitUntilTheIsrIsRead()
    {
        SplitRingDriver ring = BringUp();

        PublishAndKick(ring);

        Assert.Multiple(() =>
        {
            Assert.That(_sink.Level, Is.True);
            Assert.That(_driver.Cfg16(PciConfigRegisters.Status) & PciConfigRegisters.StatusInterrupt, Is.EqualTo(PciConfigRegisters.StatusInterrupt));
        });
        Assert.Multiple(() =>
        {
            Assert.That(_driver.Mem8(_driver.Isr), Is.EqualTo(1));
            Assert.That(_sink.Level, Is.False);
            Assert.That(_driver.Cfg16(PciConfigRegisters.Status) & PciConfigRegisters.StatusInterrupt, Is.Zero);
            Assert.That(_driver.Mem8(_driver.Isr), Is.Zero, "read-to-clear");
        });
    }

    [Test]
    public void Intx_DisableBit_KeepsTheLineLowButTheStatusBitSet()
    {
        SplitRingDriver ring = BringUp();
        _driver.WriteCfg16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster | PciConfigRegisters.CommandInterruptDisable);

        PublishAndKick(ring);

        Assert.Multiple(() =>
        {
            Assert.That(_sink.Level, Is.False);
            Assert.That(_driver.Cfg16(PciConfigRegisters.Status) & PciConfigRegisters.StatusInterrupt, Is.EqualTo(PciConfigRegisters.StatusInterrupt));
        });

        _driver.WriteCfg16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster);
        Assert.That(_sink.Level, Is.True, "re-enabling INTx raises the pending level");
    }

    [Test]
    public void Intx_EnablingMsix_DropsTheLine()
    {
        SplitRingDriver ring = BringUp();
        PublishAndKick(ring);
        Assert.That(_sink.Level, Is.True);

        _driver.SetMsixControl(enabled: true, functionMasked: false);

        Assert.That(_sink.Level, Is.False);
    }

    [Test]
    public void Intx_ConcurrentSignalsAndIsrReads_EndWithTheLineMatchingTheIsr()
    {
        BringUp();
        WorkerSignal context = new(_device);
        using var stop = new CancellationTokenSource();
        var signaller = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                context.Signal();
            }
        });

        for (int i = 0; i < 20_000; i++)
        {
            _driver.Mem8(_driver.Isr);
        }

        stop.Cancel();
        signaller.Wait();
        byte isr = _driver.Mem8(_driver.Isr);
        Assert.That(_sink.Level, Is.False, $"after the last ISR read (which returned {isr}) nothing is pending");
    }

    // Signals queue 0 from another thread, as a device worker does.
    private readonly struct WorkerSignal(Fakes.FakeDevice device)
    {
        public void Signal() => device.Context?.SignalUsedBuffers(0);
    }
}
