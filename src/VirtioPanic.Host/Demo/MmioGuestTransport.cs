using System.Buffers.Binary;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Virtio.Device;
using R = VirtioPanic.Transport.Mmio.VirtioMmioRegisters;

namespace VirtioPanic.Host.Demo;

// A virtio_mmio-like driver: checks the magic and version, then programs the register window.
internal sealed class MmioGuestTransport : GuestTransport
{
    private readonly VirtioMmioDevice _device;

    internal MmioGuestTransport(VirtioMmioDevice device) => _device = device;

    internal override string Name => "virtio-mmio";

    internal override void Probe()
    {
        if (Read32(R.MagicValue) != R.Magic || Read32(R.Version) != 2)
        {
            throw new InvalidOperationException("no virtio-mmio v2 device in the window");
        }
    }

    internal override DeviceStatus ReadStatus() => (DeviceStatus)Read32(R.Status);

    internal override void WriteStatus(DeviceStatus status) => Write32(R.Status, (uint)status);

    internal override ulong ReadDeviceFeatures()
    {
        Write32(R.DeviceFeaturesSel, 0);
        ulong low = Read32(R.DeviceFeatures);
        Write32(R.DeviceFeaturesSel, 1);
        return low | ((ulong)Read32(R.DeviceFeatures) << 32);
    }

    internal override void WriteDriverFeatures(ulong features)
    {
        Write32(R.DriverFeaturesSel, 0);
        Write32(R.DriverFeatures, (uint)features);
        Write32(R.DriverFeaturesSel, 1);
        Write32(R.DriverFeatures, (uint)(features >> 32));
    }

    internal override ushort SetUpQueue(int index, ushort wanted, ulong descriptors, ulong driver, ulong device)
    {
        Write32(R.QueueSel, (uint)index);
        ushort size = (ushort)Math.Min(wanted, Read32(R.QueueSizeMax));
        Write32(R.QueueSize, size);
        Write32(R.QueueDescLow, (uint)descriptors);
        Write32(R.QueueDescHigh, (uint)(descriptors >> 32));
        Write32(R.QueueDriverLow, (uint)driver);
        Write32(R.QueueDriverHigh, (uint)(driver >> 32));
        Write32(R.QueueDeviceLow, (uint)device);
        Write32(R.QueueDeviceHigh, (uint)(device >> 32));
        Write32(R.QueueReady, 1);
        return size;
    }

    internal override void Kick(int queue) => Write32(R.QueueNotify, (uint)queue);

    internal override uint ReadConfig32(uint offset) => Read32(R.Config + (int)offset);

    internal override void WriteConfig32(uint offset, uint value) => Write32(R.Config + (int)offset, value);

    internal override void HostReset() => _device.Reset();

    private uint Read32(int offset)
    {
        Span<byte> b = stackalloc byte[4];
        _device.Read((ulong)offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private void Write32(int offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        _device.Write((ulong)offset, b);
    }
}
