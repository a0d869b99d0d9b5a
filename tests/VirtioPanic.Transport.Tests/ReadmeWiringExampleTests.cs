using System.Buffers.Binary;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VirtioPanic.Device;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Transport.Tests;

// The README's "Embedding the device in a hypervisor" wiring, verbatim, against a toy hypervisor:
// a configuration-space exit handler, an MMIO bus that maps what BarChanged says, and a doorbell
// fast path. Then a firmware-style BAR assignment through those exits, and a guest reading the
// common configuration and ringing a doorbell through the bus.
public sealed class ReadmeWiringExampleTests
{
    [Test]
    public void ReadmeWiring_FirmwareProgramsTheBar_GuestReachesTheFunctionThroughTheBus()
    {
        using var guestMemory = GuestMemory.CreateAnonymous(1UL << 20);
        var interrupts = new RecordingInterruptSink();
        var configSpace = new ToyConfigSpace();
        var mmioBus = new ToyMmioBus();
        var fastPath = new ToyFastPath();
        TimeProvider timeProvider = TimeProvider.System;
        ILogger logger = NullLogger.Instance;

        // README-SNIPPET: README.md
        using var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "wdt0" }, timeProvider, logger);
        var pci = new VirtioPciFunction(device, guestMemory, interrupts /* IInterruptSink */, new VirtioPciFunctionOptions(), logger);
        pci.BarChanged += (_, e) =>                    // the guest moved a BAR or toggled memory decoding
        {
            if (e.Previous.IsEnabled)
            {
                mmioBus.Unmap(e.Previous.Address, e.Previous.Size);
            }

            if (e.Current.IsEnabled)
            {
                mmioBus.Map(e.Current.Address, e.Current.Size, pci);
            }

            // Optional ioeventfd-style fast path. The doorbells live in BAR0: GetDoorbells() is empty until
            // the guest enables memory decoding and moves with the BAR, so refresh them on every change.
            fastPath.Clear();
            foreach (VirtioDoorbell bell in pci.GetDoorbells())
            {
                fastPath.Add(bell.Address, bell.Length, () => pci.NotifyQueue(bell.QueueIndex));
            }
        };
        configSpace.OnRead = (offset, data) => pci.ReadConfig(offset, data);    // CF8/CFC or ECAM exit
        configSpace.OnWrite = (offset, data) => pci.WriteConfig(offset, data);
        mmioBus.OnRead = (gpa, data) => pci.TryReadMemory(gpa, data);           // false: not this function's
        mmioBus.OnWrite = (gpa, data) => pci.TryWriteMemory(gpa, data);
        // END-README-SNIPPET

        Assert.That(fastPath.Count, Is.Zero, "no doorbell before the firmware enables memory decoding");

        // Firmware: place BAR0 (64-bit) at 0xE000_0000 and turn memory decoding on.
        configSpace.Write32(PciConfigRegisters.Bar0, 0xE000_0000 | PciConfigRegisters.BarMemoryType64);
        configSpace.Write32(PciConfigRegisters.Bar0 + 4, 0);
        configSpace.Write16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster);

        // Guest: find the common configuration through the capability list, read num_queues via the bus.
        uint commonOffset = FindCapability(configSpace, VirtioPciCapabilityRegisters.TypeCommonConfig);
        byte[] numQueues = new byte[2];
        bool routed = mmioBus.Read(0xE000_0000 + commonOffset + VirtioPciCommonConfigRegisters.NumQueues, numQueues);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(configSpace.Read16(PciConfigRegisters.DeviceId), Is.EqualTo((ushort)0x1063), "0x1040 + 35");
            Assert.That(mmioBus.MappedAt(0xE000_0000), Is.True, "BarChanged mapped BAR0 where the firmware put it");
            Assert.That(routed, Is.True);
            Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(numQueues), Is.EqualTo((ushort)device.QueueCount));
            Assert.That(fastPath.Count, Is.EqualTo(device.QueueCount), "one doorbell per queue");
            Assert.That(fastPath.Doorbells.All(d => d.Address >= 0xE000_0000), Is.True, "doorbells live in the mapped BAR");
        }

        // Moving the BAR unmaps the old range and maps the new one; the doorbells follow it.
        configSpace.Write32(PciConfigRegisters.Bar0, 0xD000_0000 | PciConfigRegisters.BarMemoryType64);
        using (Assert.EnterMultipleScope())
        {
            Assert.That((mmioBus.MappedAt(0xE000_0000), mmioBus.MappedAt(0xD000_0000)), Is.EqualTo((false, true)));
            Assert.That(fastPath.Count, Is.EqualTo(device.QueueCount));
            Assert.That(fastPath.Doorbells.All(d => d.Address is >= 0xD000_0000 and < 0xE000_0000), Is.True, "refreshed on BarChanged");
        }

        // Turning decoding off empties the fast path.
        configSpace.Write16(PciConfigRegisters.Command, 0);
        Assert.That((fastPath.Count, mmioBus.MappedAt(0xD000_0000)), Is.EqualTo((0, false)));
    }

    private static uint FindCapability(ToyConfigSpace config, byte type)
    {
        byte next = config.Read8(PciConfigRegisters.CapabilitiesPointer);
        for (int guard = 0; next != 0 && guard < 48; guard++)
        {
            if (config.Read8(next) == PciConfigRegisters.CapabilityIdVendorSpecific && config.Read8((uint)next + VirtioPciCapabilityRegisters.ConfigType) == type)
            {
                return config.Read32((uint)next + VirtioPciCapabilityRegisters.Offset);
            }

            next = config.Read8((uint)next + PciConfigRegisters.CapabilityNext);
        }

        throw new AssertionException($"no virtio capability of type {type}");
    }

    private delegate void ConfigAccess(uint offset, Span<byte> data);

    private delegate void ConfigWrite(uint offset, ReadOnlySpan<byte> data);

    private delegate bool BusRead(ulong gpa, Span<byte> data);

    private delegate bool BusWrite(ulong gpa, ReadOnlySpan<byte> data);

    private sealed class ToyConfigSpace
    {
        internal ConfigAccess OnRead { get; set; } = (_, _) => { };

        internal ConfigWrite OnWrite { get; set; } = (_, _) => { };

        internal byte Read8(uint offset)
        {
            Span<byte> b = stackalloc byte[1];
            OnRead(offset, b);
            return b[0];
        }

        internal ushort Read16(uint offset)
        {
            Span<byte> b = stackalloc byte[2];
            OnRead(offset, b);
            return BinaryPrimitives.ReadUInt16LittleEndian(b);
        }

        internal uint Read32(uint offset)
        {
            Span<byte> b = stackalloc byte[4];
            OnRead(offset, b);
            return BinaryPrimitives.ReadUInt32LittleEndian(b);
        }

        internal void Write16(uint offset, ushort value)
        {
            Span<byte> b = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(b, value);
            OnWrite(offset, b);
        }

        internal void Write32(uint offset, uint value)
        {
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(b, value);
            OnWrite(offset, b);
        }
    }

    private sealed class ToyMmioBus
    {
        private readonly List<(ulong Address, ulong Size)> _ranges = [];

        internal BusRead OnRead { get; set; } = (_, _) => false;

        internal BusWrite OnWrite { get; set; } = (_, _) => false;

        internal void Map(ulong address, ulong size, object owner) => _ranges.Add((address, size));

        internal void Unmap(ulong address, ulong size) => _ranges.Remove((address, size));

        internal bool MappedAt(ulong address) => _ranges.Any(r => address - r.Address < r.Size);

        internal bool Read(ulong gpa, Span<byte> data) => MappedAt(gpa) && OnRead(gpa, data);
    }

    private sealed class ToyFastPath
    {
        internal List<(ulong Address, int Length, Func<bool> Ring)> Doorbells { get; } = [];

        internal int Count => Doorbells.Count;

        internal void Clear() => Doorbells.Clear();

        internal void Add(ulong address, int length, Func<bool> ring) => Doorbells.Add((address, length, ring));
    }
}
