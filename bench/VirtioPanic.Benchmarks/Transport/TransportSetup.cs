using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;
using Mmio = VirtioPanic.Transport.Mmio.VirtioMmioRegisters;

namespace VirtioPanic.Benchmarks.Transport;

// Brings a transport to DRIVER_OK with queue 0 enabled, through the same register accesses a
// guest makes, so the benchmarks measure a live device.
internal static class TransportSetup
{
    internal const ulong VirtioBar = 0xE000_0000;
    internal const ulong MsixBar = 0xE010_0000;
    private const byte Ready = (byte)(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk);

    internal static VirtioPciFunction LivePci(GuestMemory memory, IVirtioDevice device)
    {
        var function = new VirtioPciFunction(device, memory, new NullInterruptSink());
        Config32(function, PciConfigRegisters.Bar0, (uint)VirtioBar);
        Config32(function, PciConfigRegisters.Bar0 + 4, 0);
        Config32(function, PciConfigRegisters.Bar0 + 8, (uint)MsixBar);
        Config32(function, PciConfigRegisters.Bar0 + 12, 0);
        Span<byte> command = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(command, PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster);
        function.WriteConfig(PciConfigRegisters.Command, command);

        SplitRingDriver ring = SplitRingDriver.Allocate(new GuestAllocator(memory, 0x1000, 1 << 20), 256, eventIndex: true);
        Bar(function, Common.DeviceStatus, [(byte)(DeviceStatus.Acknowledge | DeviceStatus.Driver)]);
        Bar32(function, Common.DriverFeatureSelect, 1);
        Bar32(function, Common.DriverFeature, (uint)(VirtioFeatures.Version1 >> 32));
        Bar(function, Common.DeviceStatus, [Ready]);
        Bar32(function, Common.QueueDescLow, (uint)ring.Config.DescriptorArea);
        Bar32(function, Common.QueueDriverLow, (uint)ring.Config.DriverArea);
        Bar32(function, Common.QueueDeviceLow, (uint)ring.Config.DeviceArea);
        Bar(function, Common.QueueEnable, [1, 0]);
        Bar(function, Common.DeviceStatus, [(byte)(Ready | (byte)DeviceStatus.DriverOk)]);
        if (function.DeviceStatus != (DeviceStatus)(Ready | (byte)DeviceStatus.DriverOk))
        {
            throw new InvalidOperationException("PCI bring-up failed: " + function.DeviceStatus);
        }

        return function;
    }

    internal static VirtioMmioTransport LiveMmio(GuestMemory memory, IVirtioDevice device)
    {
        var mmio = new VirtioMmioTransport(device, memory, new NullInterruptSink());
        SplitRingDriver ring = SplitRingDriver.Allocate(new GuestAllocator(memory, 0x20_0000, 1 << 20), 256, eventIndex: true);
        Mmio32(mmio, Mmio.Status, (uint)(DeviceStatus.Acknowledge | DeviceStatus.Driver));
        Mmio32(mmio, Mmio.DriverFeaturesSel, 1);
        Mmio32(mmio, Mmio.DriverFeatures, (uint)(VirtioFeatures.Version1 >> 32));
        Mmio32(mmio, Mmio.Status, Ready);
        Mmio32(mmio, Mmio.QueueSize, 256);
        Mmio32(mmio, Mmio.QueueDescLow, (uint)ring.Config.DescriptorArea);
        Mmio32(mmio, Mmio.QueueDriverLow, (uint)ring.Config.DriverArea);
        Mmio32(mmio, Mmio.QueueDeviceLow, (uint)ring.Config.DeviceArea);
        Mmio32(mmio, Mmio.QueueReady, 1);
        Mmio32(mmio, Mmio.Status, Ready | (uint)DeviceStatus.DriverOk);
        if (mmio.DeviceStatus != (DeviceStatus)(Ready | (byte)DeviceStatus.DriverOk))
        {
            throw new InvalidOperationException("MMIO bring-up failed: " + mmio.DeviceStatus);
        }

        return mmio;
    }

    private static void Config32(VirtioPciFunction function, int offset, uint value)
    {
        Span<byte> data = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        function.WriteConfig((uint)offset, data);
    }

    private static void Bar(VirtioPciFunction function, int offset, ReadOnlySpan<byte> data) => function.WriteBar(0, (ulong)offset, data);

    private static void Bar32(VirtioPciFunction function, int offset, uint value)
    {
        Span<byte> data = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        function.WriteBar(0, (ulong)offset, data);
    }

    private static void Mmio32(VirtioMmioTransport mmio, int offset, uint value)
    {
        Span<byte> data = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        mmio.Write((ulong)offset, data);
    }
}
