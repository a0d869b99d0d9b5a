using System.Buffers.Binary;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;
using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;

namespace VirtioPanic.Host.Demo;

// Firmware plus a virtio_pci_modern-like driver: sizes and places BAR0, enables memory decoding
// and bus mastering, walks the capability list and maps the common, notify, ISR and device
// configuration structures; then accesses them by guest-physical address (MSI-X stays off, so the
// function signals through INTx).
internal sealed class PciGuestTransport : GuestTransport
{
    private const ulong BarAddress = 0xE000_0000;
    private const ulong MsixBarAddress = 0xE010_0000;

    private readonly VirtioPciFunction _function;
    private ulong _common;
    private ulong _notify;
    private uint _notifyMultiplier;
    private ulong _deviceConfig;

    internal PciGuestTransport(VirtioPciFunction function) => _function = function;

    internal override string Name => "virtio-pci";

    internal override void Probe()
    {
        WriteCfg16(PciConfigRegisters.Command, 0);
        foreach ((int bar, ulong address) in new[] { (0, BarAddress), (2, MsixBarAddress) })
        {
            uint low = (uint)(PciConfigRegisters.Bar0 + (4 * bar));
            WriteCfg32(low, uint.MaxValue);
            WriteCfg32(low + 4, uint.MaxValue);
            ulong mask = ((ulong)Cfg32(low + 4) << 32) | (Cfg32(low) & ~0xFu);
            if (mask == 0)
            {
                continue;
            }

            WriteCfg32(low, (uint)address);
            WriteCfg32(low + 4, (uint)(address >> 32));
        }

        WriteCfg16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster);
        int guard = 48;
        for (int at = Cfg8(PciConfigRegisters.CapabilitiesPointer) & ~3; at != 0 && guard-- > 0; at = Cfg8((uint)at + 1) & ~3)
        {
            if (Cfg8((uint)at) != PciConfigRegisters.CapabilityIdVendorSpecific || Cfg8((uint)at + VirtioPciCapabilityRegisters.Bar) != 0)
            {
                continue;
            }

            ulong address = BarAddress + Cfg32((uint)at + VirtioPciCapabilityRegisters.Offset);
            switch (Cfg8((uint)at + VirtioPciCapabilityRegisters.ConfigType))
            {
                case VirtioPciCapabilityRegisters.TypeCommonConfig when _common == 0:
                    _common = address;
                    break;
                case VirtioPciCapabilityRegisters.TypeNotifyConfig when _notify == 0:
                    _notify = address;
                    _notifyMultiplier = Cfg32((uint)at + VirtioPciCapabilityRegisters.NotifyOffMultiplier);
                    break;
                case VirtioPciCapabilityRegisters.TypeDeviceConfig when _deviceConfig == 0:
                    _deviceConfig = address;
                    break;
            }
        }

        if (_common == 0 || _notify == 0 || _deviceConfig == 0)
        {
            throw new InvalidOperationException("virtio-pci capabilities not found");
        }
    }

    internal override DeviceStatus ReadStatus() => (DeviceStatus)Mem8(_common + Common.DeviceStatus);

    internal override void WriteStatus(DeviceStatus status) => WriteMem8(_common + Common.DeviceStatus, (byte)status);

    internal override ulong ReadDeviceFeatures()
    {
        WriteMem32(_common + Common.DeviceFeatureSelect, 0);
        ulong low = Mem32(_common + Common.DeviceFeature);
        WriteMem32(_common + Common.DeviceFeatureSelect, 1);
        return low | ((ulong)Mem32(_common + Common.DeviceFeature) << 32);
    }

    internal override void WriteDriverFeatures(ulong features)
    {
        WriteMem32(_common + Common.DriverFeatureSelect, 0);
        WriteMem32(_common + Common.DriverFeature, (uint)features);
        WriteMem32(_common + Common.DriverFeatureSelect, 1);
        WriteMem32(_common + Common.DriverFeature, (uint)(features >> 32));
    }

    internal override ushort SetUpQueue(int index, ushort wanted, ulong descriptors, ulong driver, ulong device)
    {
        WriteMem16(_common + Common.QueueSelect, (ushort)index);
        ushort size = Math.Min(wanted, Mem16(_common + Common.QueueSize));
        WriteMem16(_common + Common.QueueSize, size);
        WriteMem32(_common + Common.QueueDescLow, (uint)descriptors);
        WriteMem32(_common + Common.QueueDescHigh, (uint)(descriptors >> 32));
        WriteMem32(_common + Common.QueueDriverLow, (uint)driver);
        WriteMem32(_common + Common.QueueDriverHigh, (uint)(driver >> 32));
        WriteMem32(_common + Common.QueueDeviceLow, (uint)device);
        WriteMem32(_common + Common.QueueDeviceHigh, (uint)(device >> 32));
        WriteMem16(_common + Common.QueueEnable, 1);
        return size;
    }

    internal override void Kick(int queue)
    {
        WriteMem16(_common + Common.QueueSelect, (ushort)queue);
        ushort offset = Mem16(_common + Common.QueueNotifyOff);
        WriteMem16(_notify + ((ulong)offset * _notifyMultiplier), (ushort)queue);
    }

    internal override uint ReadConfig32(uint offset) => Mem32(_deviceConfig + offset);

    internal override void WriteConfig32(uint offset, uint value) => WriteMem32(_deviceConfig + offset, value);

    internal override void HostReset()
    {
        _function.Reset();
        _common = _notify = _deviceConfig = 0;
    }

    private byte Cfg8(uint offset)
    {
        Span<byte> b = stackalloc byte[1];
        _function.ReadConfig(offset, b);
        return b[0];
    }

    private uint Cfg32(uint offset)
    {
        Span<byte> b = stackalloc byte[4];
        _function.ReadConfig(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private void WriteCfg16(uint offset, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        _function.WriteConfig(offset, b);
    }

    private void WriteCfg32(uint offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        _function.WriteConfig(offset, b);
    }

    private byte Mem8(ulong address)
    {
        Span<byte> b = stackalloc byte[1];
        _function.TryReadMemory(address, b);
        return b[0];
    }

    private ushort Mem16(ulong address)
    {
        Span<byte> b = stackalloc byte[2];
        _function.TryReadMemory(address, b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    private uint Mem32(ulong address)
    {
        Span<byte> b = stackalloc byte[4];
        _function.TryReadMemory(address, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private void WriteMem8(ulong address, byte value) => _function.TryWriteMemory(address, [value]);

    private void WriteMem16(ulong address, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        _function.TryWriteMemory(address, b);
    }

    private void WriteMem32(ulong address, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        _function.TryWriteMemory(address, b);
    }
}
