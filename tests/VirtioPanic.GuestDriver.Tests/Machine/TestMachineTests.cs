using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Tests.Devices;
using VirtioPanic.Transport.Pci;

namespace VirtioPanic.GuestDriver.Tests.Machine;

public sealed class TestMachineTests
{
    [TestCase(PciConfigMechanism.Ecam)]
    [TestCase(PciConfigMechanism.Ports)]
    public void Boot_EitherConfigMechanism_FindsTheSameDevicesAndAssignsBars(PciConfigMechanism mechanism)
    {
        using var machine = new TestMachine();
        VirtioPciFunction first = machine.AddPciDevice(new EchoDevice());
        VirtioPciFunction second = machine.AddPciDevice(new EchoDevice());

        using GuestKernel guest = GuestKernel.Boot(machine, new GuestKernelOptions { PciConfigMechanism = mechanism });

        PciBarMapping[] bars = [.. first.GetBarMappings(), .. second.GetBarMappings()];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(guest.PciConfigMechanism, Is.EqualTo(mechanism));
            Assert.That(guest.VirtioDevices.Select(d => d.Location), Is.EqualTo(new[] { "pci 0000:00:01.0 [1af4:107c]", "pci 0000:00:02.0 [1af4:107c]" }));
            Assert.That(bars.All(b => b.IsEnabled), Is.True, "firmware enabled memory decoding");
            Assert.That(bars.All(b => b.Address % b.Size == 0 && b.Address >= 0xC000_0000 && b.Address + b.Size <= 0xD000_0000), Is.True, "naturally aligned inside the window");
            Assert.That(bars.Select(b => b.Address).Distinct().Count(), Is.EqualTo(4), "no two BARs overlap at the same base");
            Assert.That(machine.UnclaimedMmioAccessCount, Is.Zero);
        }
    }

    [Test]
    public void ConfigPorts_AbsentDevice_ReadsAllOnes_AndTheHostBridgeIsNotVirtio()
    {
        using var machine = new TestMachine();
        Span<byte> data = stackalloc byte[4];

        machine.Out(TestMachine.ConfigAddressPort, Dword(0x8000_0000u | (5u << 11)));
        machine.In(TestMachine.ConfigDataPort, data);
        uint absent = BinaryPrimitives.ReadUInt32LittleEndian(data);
        machine.Out(TestMachine.ConfigAddressPort, Dword(0x8000_0000u));
        machine.In(TestMachine.ConfigDataPort, data);
        uint bridge = BinaryPrimitives.ReadUInt32LittleEndian(data);
        using GuestKernel guest = GuestKernel.Boot(machine);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(absent, Is.EqualTo(uint.MaxValue));
            Assert.That(bridge, Is.EqualTo(0x29C0_8086u));
            Assert.That(guest.VirtioDevices, Is.Empty);
        }
    }

    [Test]
    public void MmioDispatch_FollowsABarTheGuestMoves()
    {
        using var machine = new TestMachine();
        VirtioPciFunction function = machine.AddPciDevice(new EchoDevice());
        using GuestKernel guest = GuestKernel.Boot(machine);
        ulong oldBase = function.GetBarMappings()[0].Address;
        const ulong NewBase = 0xC800_0000;
        Span<byte> vendor = stackalloc byte[2];

        // The guest moves BAR 0 through ECAM (device 1 at 0xB0008000).
        Span<byte> value = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(value, (uint)NewBase);
        machine.TryWrite(0xB000_8000 + PciConfigRegisters.Bar0, value);
        bool oldClaimed = machine.TryRead(oldBase, value);
        bool newClaimed = machine.TryRead(NewBase, value);
        machine.TryRead(0xB000_8000, vendor);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(function.GetBarMappings()[0].Address, Is.EqualTo(NewBase));
            Assert.That(oldClaimed, Is.False);
            Assert.That(newClaimed, Is.True);
            Assert.That(machine.UnclaimedMmioAccessCount, Is.EqualTo(1));
            Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(vendor), Is.EqualTo(0x1AF4));
        }
    }

    [Test]
    public void MmioDevices_FixedAddressesAndLines_InTheLayout()
    {
        using var machine = new TestMachine();
        machine.AddMmioDevice(new EchoDevice());
        machine.AddMmioDevice(new EchoDevice());

        IReadOnlyList<VirtioMmioSlot> slots = machine.Layout.MmioDevices;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(slots.Select(s => (s.Base, s.Line)), Is.EqualTo(new[] { (0xD000_0000UL, 5), (0xD000_1000UL, 6) }));
            Assert.That(slots.All(s => s.Size >= 0x200), Is.True);
        }
    }

    [Test]
    public void Snapshot_RestoresRamContents()
    {
        using var machine = new TestMachine();
        machine.Memory.TryWriteUInt32(0x20_0000, 0x1234_5678);
        MachineSnapshot snapshot = machine.SaveSnapshot();
        machine.Memory.TryWriteUInt32(0x20_0000, 0);

        machine.RestoreSnapshot(snapshot);
        machine.Memory.TryReadUInt32(0x20_0000, out uint value);

        Assert.That(value, Is.EqualTo(0x1234_5678));
    }

    private static byte[] Dword(uint value)
    {
        byte[] data = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        return data;
    }
}
