using System.Buffers.Binary;
using VirtioPanic.Device;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Fuzz.Targets;

// Writes TransportOps op streams the way a driver initialises the device (virtio 1.2 §3.1.1
// "Driver Requirements: Device Initialization"): for the seed corpora, and for the restore
// targets, which restore into a device that a driver has set up.
//
// Ring layout in guest memory (split rings of 16 entries; the image is region 0 of FuzzGuestMemory):
//   queue q: descriptors at Descriptors(q) = q * 0x400, available ring at +0x100, used ring at
//   +0x200, buffers from Buffers(q) = +0x300 (0x100 bytes)
internal sealed class DriverScript
{
    internal const ushort QueueSize = 16;
    internal const ulong PciBar0 = 0xE000_0000;
    internal const ulong PciBar2 = 0xE010_0000;

    private readonly List<byte> _ops = [];
    private readonly TransportKind _kind;

    internal DriverScript(TransportKind kind)
    {
        _kind = kind;
    }

    internal static ulong Descriptors(int queue) => (ulong)queue * 0x400;

    internal static ulong Avail(int queue) => Descriptors(queue) + 0x100;

    internal static ulong Used(int queue) => Descriptors(queue) + 0x200;

    internal static ulong Buffers(int queue) => Descriptors(queue) + 0x300;

    internal byte[] ToArray() => [.. _ops];

    // Everything up to DRIVER_OK, with the given device features (VERSION_1 is always added).
    internal DriverScript Initialize(WatchdogFeatures features, int queues = 3)
    {
        if (_kind == TransportKind.Pci)
        {
            Config(PciConfigRegisters.Bar0, 4, (uint)PciBar0);
            Config(PciConfigRegisters.Bar0 + 4, 4, (uint)(PciBar0 >> 32));
            Config(PciConfigRegisters.Bar0 + 8, 4, (uint)PciBar2);
            Config(PciConfigRegisters.Bar0 + 12, 4, (uint)(PciBar2 >> 32));
            Config(PciConfigRegisters.Command, 2, PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster);
        }

        Status(DeviceStatus.Acknowledge);
        Status(DeviceStatus.Acknowledge | DeviceStatus.Driver);
        ulong driverFeatures = (ulong)features | VirtioFeatures.Version1;
        Register(Common(VirtioPciCommonConfigRegisters.DriverFeatureSelect, VirtioMmioRegisters.DriverFeaturesSel), 4, 0);
        Register(Common(VirtioPciCommonConfigRegisters.DriverFeature, VirtioMmioRegisters.DriverFeatures), 4, (uint)driverFeatures);
        Register(Common(VirtioPciCommonConfigRegisters.DriverFeatureSelect, VirtioMmioRegisters.DriverFeaturesSel), 4, 1);
        Register(Common(VirtioPciCommonConfigRegisters.DriverFeature, VirtioMmioRegisters.DriverFeatures), 4, (uint)(driverFeatures >> 32));
        Status(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk);
        for (int q = 0; q < queues; q++)
        {
            bool pci = _kind == TransportKind.Pci;
            Register(Common(VirtioPciCommonConfigRegisters.QueueSelect, VirtioMmioRegisters.QueueSel), pci ? 2 : 4, (uint)q);
            Register(Common(VirtioPciCommonConfigRegisters.QueueSize, VirtioMmioRegisters.QueueSize), pci ? 2 : 4, QueueSize);
            Register(Common(VirtioPciCommonConfigRegisters.QueueDescLow, VirtioMmioRegisters.QueueDescLow), 4, (uint)Descriptors(q));
            Register(Common(VirtioPciCommonConfigRegisters.QueueDriverLow, VirtioMmioRegisters.QueueDriverLow), 4, (uint)Avail(q));
            Register(Common(VirtioPciCommonConfigRegisters.QueueDeviceLow, VirtioMmioRegisters.QueueDeviceLow), 4, (uint)Used(q));
            Register(Common(VirtioPciCommonConfigRegisters.QueueEnable, VirtioMmioRegisters.QueueReady), pci ? 2 : 4, 1);
        }

        Status(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk);
        return this;
    }

    internal DriverScript Notify(int queue)
    {
        _ops.Add(6);
        _ops.Add((byte)queue);
        return this;
    }

    // Sub-op of op kind 7 (TransportOps.Event), with its u16 argument where it takes one.
    internal DriverScript Event(byte subOp, ushort? argument = null)
    {
        _ops.Add(7);
        _ops.Add(subOp);
        if (argument is { } a)
        {
            _ops.Add((byte)a);
            _ops.Add((byte)(a >> 8));
        }

        return this;
    }

    internal DriverScript ReadConfigField(uint offset, int width)
    {
        // Device-specific configuration: PCI BAR0 + 0x2000, MMIO 0x100.
        ushort at = (ushort)(offset + (_kind == TransportKind.Pci ? VirtioPciLayout.DeviceConfigOffset : VirtioMmioRegisters.Config));
        Access(_kind == TransportKind.Pci ? 2 : 0, width, at, null);
        return this;
    }

    internal DriverScript WriteConfigField(uint offset, int width, uint value)
    {
        ushort at = (ushort)(offset + (_kind == TransportKind.Pci ? VirtioPciLayout.DeviceConfigOffset : VirtioMmioRegisters.Config));
        Access(_kind == TransportKind.Pci ? 3 : 1, width, at, value);
        return this;
    }

    private int Common(int pciOffset, int mmioOffset) => _kind == TransportKind.Pci ? pciOffset : mmioOffset;

    private void Status(DeviceStatus status) =>
        Register(Common(VirtioPciCommonConfigRegisters.DeviceStatus, VirtioMmioRegisters.Status), _kind == TransportKind.Pci ? 1 : 4, (uint)status);

    // A virtio register write: PCI common configuration in BAR0, or the MMIO register block.
    private void Register(int offset, int width, uint value) => Access(_kind == TransportKind.Pci ? 3 : 1, width, (ushort)offset, value);

    private void Config(int offset, int width, uint value) => Access(1, width, (ushort)offset, value);

    private void Access(int kind, int width, ushort offset, uint? value)
    {
        int widthIndex = Array.IndexOf(TransportOps.Widths, width);
        _ops.Add((byte)(kind | (widthIndex << 3)));
        _ops.Add((byte)offset);
        _ops.Add((byte)(offset >> 8));
        if (value is { } v)
        {
            Span<byte> bytes = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, v);
            foreach (byte b in bytes[..width])
            {
                _ops.Add(b);
            }
        }
    }
}
