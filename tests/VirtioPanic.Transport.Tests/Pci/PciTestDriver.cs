using System.Buffers.Binary;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Device;
using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;

namespace VirtioPanic.Transport.Tests.Pci;

// Firmware plus a Linux-like virtio_pci_modern driver, reduced to register accesses: sizes and
// places the BARs, enables decoding and bus mastering, walks the capability list from the
// capabilities pointer and maps the virtio structures, then accesses them by guest-physical
// address through the function's MMIO entry points.
internal sealed class PciTestDriver : ITransportDriver
{
    internal const ulong VirtioBarAddress = 0xE000_0000;
    internal const ulong MsixBarAddress = 0xE010_0000;

    internal PciTestDriver(VirtioPciFunction function, RecordingInterruptSink sink, bool programFirmware = true)
    {
        Function = function;
        Sink = sink;
        if (programFirmware)
        {
            AssignBars();
        }

        FindCapabilities();
    }

    public RecordingInterruptSink Sink { get; }

    internal VirtioPciFunction Function { get; }

    internal ulong CommonConfig { get; private set; }

    internal ulong NotifyBase { get; private set; }

    internal uint NotifyMultiplier { get; private set; }

    internal ulong Isr { get; private set; }

    internal ulong DeviceConfig { get; private set; }

    internal int PciConfigCapability { get; private set; }

    internal int MsixCapability { get; private set; }

    public long InvalidAccessCount => Function.InvalidAccessCount;

    public long DroppedNotifications => Function.DroppedNotificationCount;

    public long DeviceFaults => Function.DeviceFaultCount;

    // --- configuration space ---

    internal byte Cfg8(uint offset)
    {
        Span<byte> b = stackalloc byte[1];
        Function.ReadConfig(offset, b);
        return b[0];
    }

    internal ushort Cfg16(uint offset)
    {
        Span<byte> b = stackalloc byte[2];
        Function.ReadConfig(offset, b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    internal uint Cfg32(uint offset)
    {
        Span<byte> b = stackalloc byte[4];
        Function.ReadConfig(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    internal void WriteCfg8(uint offset, byte value) => Function.WriteConfig(offset, [value]);

    internal void WriteCfg16(uint offset, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        Function.WriteConfig(offset, b);
    }

    internal void WriteCfg32(uint offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        Function.WriteConfig(offset, b);
    }

    // --- memory ---

    internal byte Mem8(ulong address)
    {
        Span<byte> b = stackalloc byte[1];
        Claim(Function.TryReadMemory(address, b));
        return b[0];
    }

    internal ushort Mem16(ulong address)
    {
        Span<byte> b = stackalloc byte[2];
        Claim(Function.TryReadMemory(address, b));
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    internal uint Mem32(ulong address)
    {
        Span<byte> b = stackalloc byte[4];
        Claim(Function.TryReadMemory(address, b));
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    internal ulong Mem64(ulong address)
    {
        Span<byte> b = stackalloc byte[8];
        Claim(Function.TryReadMemory(address, b));
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    internal void WriteMem8(ulong address, byte value) => Claim(Function.TryWriteMemory(address, [value]));

    internal void WriteMem16(ulong address, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        Claim(Function.TryWriteMemory(address, b));
    }

    internal void WriteMem32(ulong address, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        Claim(Function.TryWriteMemory(address, b));
    }

    // --- firmware ---

    // Sizes each 64-bit BAR the way firmware does (all ones to both halves, read back), places
    // it, and turns on memory decoding and bus mastering.
    internal void AssignBars()
    {
        WriteCfg16(PciConfigRegisters.Command, 0);
        foreach ((int bar, ulong address) in new[] { (0, VirtioBarAddress), (2, MsixBarAddress) })
        {
            uint low = (uint)(PciConfigRegisters.Bar0 + (4 * bar));
            WriteCfg32(low, uint.MaxValue);
            WriteCfg32(low + 4, uint.MaxValue);
            ulong mask = ((ulong)Cfg32(low + 4) << 32) | (Cfg32(low) & ~0xFu);
            ulong size = ~mask + 1;
            Assert.That(address % size, Is.Zero, "BAR address must be size-aligned");
            WriteCfg32(low, (uint)address);
            WriteCfg32(low + 4, (uint)(address >> 32));
        }

        WriteCfg16(PciConfigRegisters.Command, PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster);
    }

    // Linux's virtio_pci_find_capability: follow cap_next from the capabilities pointer, take the
    // first vendor capability of each cfg_type whose BAR is valid.
    internal void FindCapabilities()
    {
        int guard = 48;   // at most 48 dword-aligned capabilities fit in 0x40..0xFF
        for (int at = Cfg8(PciConfigRegisters.CapabilitiesPointer) & ~3; at != 0 && guard-- > 0; at = Cfg8((uint)at + 1) & ~3)
        {
            byte id = Cfg8((uint)at);
            if (id == PciConfigRegisters.CapabilityIdMsix)
            {
                MsixCapability = at;
                continue;
            }

            if (id != PciConfigRegisters.CapabilityIdVendorSpecific)
            {
                continue;
            }

            byte type = Cfg8((uint)at + VirtioPciCapabilityRegisters.ConfigType);
            byte bar = Cfg8((uint)at + VirtioPciCapabilityRegisters.Bar);
            uint offset = Cfg32((uint)at + VirtioPciCapabilityRegisters.Offset);
            ulong barBase = bar == 0 ? BarAddress(0) : 0;
            switch (type)
            {
                case VirtioPciCapabilityRegisters.TypeCommonConfig when CommonConfig == 0:
                    CommonConfig = barBase + offset;
                    break;
                case VirtioPciCapabilityRegisters.TypeNotifyConfig when NotifyBase == 0:
                    NotifyBase = barBase + offset;
                    NotifyMultiplier = Cfg32((uint)at + VirtioPciCapabilityRegisters.NotifyOffMultiplier);
                    break;
                case VirtioPciCapabilityRegisters.TypeIsrConfig when Isr == 0:
                    Isr = barBase + offset;
                    break;
                case VirtioPciCapabilityRegisters.TypeDeviceConfig when DeviceConfig == 0:
                    DeviceConfig = barBase + offset;
                    break;
                case VirtioPciCapabilityRegisters.TypePciConfig when PciConfigCapability == 0:
                    PciConfigCapability = at;
                    break;
            }
        }
    }

    internal ulong BarAddress(int bar)
    {
        uint low = (uint)(PciConfigRegisters.Bar0 + (4 * bar));
        return ((ulong)Cfg32(low + 4) << 32) | (Cfg32(low) & ~0xFu);
    }

    // --- MSI-X ---

    internal ulong MsixTable => BarAddress(2) + (Cfg32((uint)MsixCapability + MsixRegisters.TableOffset) & ~7u);

    internal ulong MsixPba => BarAddress(2) + (Cfg32((uint)MsixCapability + MsixRegisters.PbaOffset) & ~7u);

    internal void ProgramVector(int vector, ulong address, uint data, bool masked)
    {
        ulong entry = MsixTable + ((ulong)vector * MsixRegisters.EntrySize);
        WriteMem32(entry + MsixRegisters.EntryAddressLow, (uint)address);
        WriteMem32(entry + MsixRegisters.EntryAddressHigh, (uint)(address >> 32));
        WriteMem32(entry + MsixRegisters.EntryData, data);
        WriteMem32(entry + MsixRegisters.EntryVectorControl, masked ? MsixRegisters.VectorMasked : 0);
    }

    internal void MaskVector(int vector, bool masked) =>
        WriteMem32(MsixTable + ((ulong)vector * MsixRegisters.EntrySize) + MsixRegisters.EntryVectorControl, masked ? MsixRegisters.VectorMasked : 0);

    internal void SetMsixControl(bool enabled, bool functionMasked) =>
        WriteCfg16((uint)MsixCapability + MsixRegisters.MessageControl, (ushort)((enabled ? MsixRegisters.Enable : 0) | (functionMasked ? MsixRegisters.FunctionMask : 0)));

    // --- ITransportDriver ---

    public DeviceStatus ReadStatus() => (DeviceStatus)Mem8(CommonConfig + Common.DeviceStatus);

    public void WriteStatus(DeviceStatus status) => WriteMem8(CommonConfig + Common.DeviceStatus, (byte)status);

    public uint ReadDeviceFeatures(uint window)
    {
        WriteMem32(CommonConfig + Common.DeviceFeatureSelect, window);
        return Mem32(CommonConfig + Common.DeviceFeature);
    }

    public void WriteDriverFeatures(uint window, uint value)
    {
        WriteMem32(CommonConfig + Common.DriverFeatureSelect, window);
        WriteMem32(CommonConfig + Common.DriverFeature, value);
    }

    public uint ReadDriverFeatures(uint window)
    {
        WriteMem32(CommonConfig + Common.DriverFeatureSelect, window);
        return Mem32(CommonConfig + Common.DriverFeature);
    }

    public void SelectQueue(uint queue) => WriteMem16(CommonConfig + Common.QueueSelect, (ushort)queue);

    // After reset queue_size holds the maximum (§4.1.4.3).
    public ushort ReadQueueSizeMax() => Mem16(CommonConfig + Common.QueueSize);

    public void WriteQueueSize(ushort size) => WriteMem16(CommonConfig + Common.QueueSize, size);

    public void WriteQueueAddresses(ulong descriptors, ulong driver, ulong device)
    {
        WriteMem32(CommonConfig + Common.QueueDescLow, (uint)descriptors);
        WriteMem32(CommonConfig + Common.QueueDescHigh, (uint)(descriptors >> 32));
        WriteMem32(CommonConfig + Common.QueueDriverLow, (uint)driver);
        WriteMem32(CommonConfig + Common.QueueDriverHigh, (uint)(driver >> 32));
        WriteMem32(CommonConfig + Common.QueueDeviceLow, (uint)device);
        WriteMem32(CommonConfig + Common.QueueDeviceHigh, (uint)(device >> 32));
    }

    public void WriteQueueReady(uint value) => WriteMem16(CommonConfig + Common.QueueEnable, (ushort)value);

    public bool ReadQueueReady() => Mem16(CommonConfig + Common.QueueEnable) != 0;

    public void WriteQueueReset() => WriteMem16(CommonConfig + Common.QueueReset, 1);

    public uint ReadQueueReset() => Mem16(CommonConfig + Common.QueueReset);

    public void Kick(int queue)
    {
        SelectQueueForNotify(queue, out ushort notifyOff);
        WriteMem16(NotifyBase + ((ulong)notifyOff * NotifyMultiplier), (ushort)queue);
    }

    public uint ReadConfigGeneration() => Mem8(CommonConfig + Common.ConfigGeneration);

    public uint ReadConfig32(uint offset) => Mem32(DeviceConfig + offset);

    public void WriteConfig32(uint offset, uint value) => WriteMem32(DeviceConfig + offset, value);

    public uint TakeInterrupt() => Mem8(Isr);

    public byte[] Save() => Function.SaveState();

    public SnapshotStatus Restore(ReadOnlySpan<byte> snapshot) => Function.RestoreState(snapshot);

    // A VM reset: the function loses its BARs, so firmware assigns them again.
    public void HostReset()
    {
        Function.Reset();
        AssignBars();
    }

    private void SelectQueueForNotify(int queue, out ushort notifyOff)
    {
        SelectQueue((uint)queue);
        notifyOff = Mem16(CommonConfig + Common.QueueNotifyOff);
    }

    private static void Claim(bool claimed) => Assert.That(claimed, Is.True, "the function did not claim an access inside its BAR");
}
