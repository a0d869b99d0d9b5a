using System.Buffers.Binary;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Device;
using Regs = VirtioPanic.Transport.Mmio.VirtioMmioRegisters;

namespace VirtioPanic.Transport.Tests.Mmio;

// A Linux-like virtio_mmio driver reduced to 32-bit register accesses.
internal sealed class MmioTestDriver : ITransportDriver
{
    internal MmioTestDriver(VirtioMmioTransport device, RecordingInterruptSink sink)
    {
        Device = device;
        Sink = sink;
    }

    public RecordingInterruptSink Sink { get; }

    internal VirtioMmioTransport Device { get; }

    public long InvalidAccessCount => Device.InvalidAccessCount;

    public long DroppedNotifications => Device.DroppedNotificationCount;

    public long DeviceFaults => Device.DeviceFaultCount;

    internal uint Read32(ulong offset)
    {
        Span<byte> b = stackalloc byte[4];
        Device.Read(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    internal void Write32(ulong offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        Device.Write(offset, b);
    }

    public DeviceStatus ReadStatus() => (DeviceStatus)Read32(Regs.Status);

    public void WriteStatus(DeviceStatus status) => Write32(Regs.Status, (uint)status);

    public uint ReadDeviceFeatures(uint window)
    {
        Write32(Regs.DeviceFeaturesSel, window);
        return Read32(Regs.DeviceFeatures);
    }

    public void WriteDriverFeatures(uint window, uint value)
    {
        Write32(Regs.DriverFeaturesSel, window);
        Write32(Regs.DriverFeatures, value);
    }

    // DriverFeatures is write-only on MMIO; the tests read it back through the device's negotiated view instead.
    public uint ReadDriverFeatures(uint window) => window switch
    {
        0 => (uint)Device.NegotiatedFeatures,
        1 => (uint)(Device.NegotiatedFeatures >> 32),
        _ => 0,
    };

    public void SelectQueue(uint queue) => Write32(Regs.QueueSel, queue);

    public ushort ReadQueueSizeMax() => (ushort)Read32(Regs.QueueSizeMax);

    public void WriteQueueSize(ushort size) => Write32(Regs.QueueSize, size);

    public void WriteQueueAddresses(ulong descriptors, ulong driver, ulong device)
    {
        Write32(Regs.QueueDescLow, (uint)descriptors);
        Write32(Regs.QueueDescHigh, (uint)(descriptors >> 32));
        Write32(Regs.QueueDriverLow, (uint)driver);
        Write32(Regs.QueueDriverHigh, (uint)(driver >> 32));
        Write32(Regs.QueueDeviceLow, (uint)device);
        Write32(Regs.QueueDeviceHigh, (uint)(device >> 32));
    }

    public void WriteQueueReady(uint value) => Write32(Regs.QueueReady, value);

    public bool ReadQueueReady() => Read32(Regs.QueueReady) != 0;

    public void WriteQueueReset() => Write32(Regs.QueueReset, 1);

    public uint ReadQueueReset() => Read32(Regs.QueueReset);

    public void Kick(int queue) => Write32(Regs.QueueNotify, (uint)queue);

    public uint ReadConfigGeneration() => Read32(Regs.ConfigGeneration);

    public uint ReadConfig32(uint offset) => Read32(Regs.Config + offset);

    public void WriteConfig32(uint offset, uint value) => Write32(Regs.Config + offset, value);

    public uint TakeInterrupt()
    {
        uint status = Read32(Regs.InterruptStatus);
        Write32(Regs.InterruptAck, status);
        return status;
    }

    public byte[] Save() => Device.SaveState();

    public SnapshotStatus Restore(ReadOnlySpan<byte> snapshot) => Device.RestoreState(snapshot);

    public void HostReset() => Device.Reset();
}
