using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Machine;

namespace VirtioPanic.GuestDriver.Kernel;

// The guest kernel's raw PCI configuration accessors (Linux raw_pci_read/raw_pci_write) over one
// of the two mechanisms. Accesses are 1, 2 or 4 bytes, naturally aligned. Bus 0 only.
internal abstract class PciConfigAccess
{
    internal abstract PciConfigMechanism Mechanism { get; }

    internal static PciConfigAccess Create(IGuestMachine machine, PciConfigMechanism mechanism)
    {
        PciHostBridgeLayout pci = machine.Layout.Pci ?? throw new InvalidOperationException("The machine has no PCI host bridge.");
        bool ecam = pci.EcamBase is not null;
        bool ports = pci.HasConfigPorts && machine.PortIo is not null;
        return mechanism switch
        {
            PciConfigMechanism.Ecam when ecam => new EcamAccess(machine.Mmio, pci.EcamBase!.Value),
            PciConfigMechanism.Ports when ports => new PortAccess(machine.PortIo!),
            PciConfigMechanism.Auto when ecam => new EcamAccess(machine.Mmio, pci.EcamBase!.Value),
            PciConfigMechanism.Auto when ports => new PortAccess(machine.PortIo!),
            _ => throw new InvalidOperationException($"The machine does not offer the {mechanism} configuration mechanism."),
        };
    }

    internal byte Read8(int device, int register) => (byte)Read(device, register, 1);

    internal ushort Read16(int device, int register) => (ushort)Read(device, register, 2);

    internal uint Read32(int device, int register) => Read(device, register, 4);

    internal void Write8(int device, int register, byte value) => Write(device, register, 1, value);

    internal void Write16(int device, int register, ushort value) => Write(device, register, 2, value);

    internal void Write32(int device, int register, uint value) => Write(device, register, 4, value);

    protected abstract uint Read(int device, int register, int width);

    protected abstract void Write(int device, int register, int width, uint value);

    private sealed class EcamAccess : PciConfigAccess
    {
        private readonly IMmioBus _mmio;
        private readonly ulong _base;

        internal EcamAccess(IMmioBus mmio, ulong ecamBase)
        {
            _mmio = mmio;
            _base = ecamBase;
        }

        internal override PciConfigMechanism Mechanism => PciConfigMechanism.Ecam;

        protected override uint Read(int device, int register, int width)
        {
            Span<byte> data = stackalloc byte[4];
            _mmio.TryRead(Address(device, register), data[..width]);
            return width switch
            {
                1 => data[0],
                2 => BinaryPrimitives.ReadUInt16LittleEndian(data),
                _ => BinaryPrimitives.ReadUInt32LittleEndian(data),
            };
        }

        protected override void Write(int device, int register, int width, uint value)
        {
            Span<byte> data = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(data, value);
            _mmio.TryWrite(Address(device, register), data[..width]);
        }

        private ulong Address(int device, int register) => _base + ((ulong)device << 15) + (ulong)register;
    }

    private sealed class PortAccess : PciConfigAccess
    {
        private const ushort AddressPort = 0xCF8;
        private const ushort DataPort = 0xCFC;

        // The address/data pair is not atomic: Linux's pci_config_lock.
        private readonly Lock _lock = new();
        private readonly IPortIoBus _ports;

        internal PortAccess(IPortIoBus ports) => _ports = ports;

        internal override PciConfigMechanism Mechanism => PciConfigMechanism.Ports;

        protected override uint Read(int device, int register, int width)
        {
            Span<byte> data = stackalloc byte[4];
            lock (_lock)
            {
                SelectUnsynchronized(device, register);
                _ports.In((ushort)(DataPort + (register & 3)), data[..width]);
            }

            return width switch
            {
                1 => data[0],
                2 => BinaryPrimitives.ReadUInt16LittleEndian(data),
                _ => BinaryPrimitives.ReadUInt32LittleEndian(data),
            };
        }

        protected override void Write(int device, int register, int width, uint value)
        {
            Span<byte> data = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(data, value);
            lock (_lock)
            {
                SelectUnsynchronized(device, register);
                _ports.Out((ushort)(DataPort + (register & 3)), data[..width]);
            }
        }

        private void SelectUnsynchronized(int device, int register)
        {
            Span<byte> address = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(address, 0x8000_0000u | ((uint)device << 11) | ((uint)register & 0xFC));
            _ports.Out(AddressPort, address);
        }
    }
}
