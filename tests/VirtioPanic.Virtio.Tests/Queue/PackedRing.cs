using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// A guest (driver-side packed ring) and a device (Virtqueue in packed format) sharing one ring.
internal sealed class PackedRing : IDisposable
{
    internal const ulong MemorySize = 16UL << 20;
    internal const ulong BufferBase = 8UL << 20;

    internal PackedRing(ushort size = 16, VirtqueueFeatures features = VirtqueueFeatures.None, int maxChainLength = 0, GuestMemory? memory = null, int maxIndirect = 8, ushort? maxSize = null)
    {
        Memory = memory ?? GuestMemory.CreateAnonymous(MemorySize);
        Allocator = new GuestAllocator(Memory, 0x1000, (4UL << 20) - 0x1000);
        Driver = PackedRingDriver.Allocate(Allocator, size, (features & VirtqueueFeatures.EventIndex) != 0, maxIndirect);
        Queue = new Virtqueue(maxSize ?? RoundUpPowerOfTwo(size), maxChainLength);
        Features = features | VirtqueueFeatures.Packed;
    }

    internal GuestMemory Memory { get; }

    internal GuestAllocator Allocator { get; }

    internal PackedRingDriver Driver { get; }

    internal Virtqueue Queue { get; }

    internal VirtqueueFeatures Features { get; }

    internal static DriverBuffer Readable(ulong offset, uint length) => new(BufferBase + offset, length, DeviceWritable: false);

    internal static DriverBuffer Writable(ulong offset, uint length) => new(BufferBase + offset, length, DeviceWritable: true);

    internal VirtqueueStatus Activate() => Queue.Activate(Memory, Driver.Config, Features);

    internal ushort AddAndPublish(params DriverBuffer[] buffers)
    {
        if (!Driver.TryAdd(buffers, out ushort id))
        {
            throw new InvalidOperationException("ring full");
        }

        Driver.Publish();
        return id;
    }

    // Writes one raw descriptor at `slot`, marked available for the driver's current wrap counter
    // unless `flags` already carries AVAIL/USED bits.
    internal void WriteRaw(ushort slot, ulong address, uint length, ushort id, DescriptorFlags flags, bool? wrap = null)
    {
        if ((flags & (DescriptorFlags.Available | DescriptorFlags.Used)) == 0)
        {
            flags |= PackedRingDriver.AvailableBits(wrap ?? true);
        }

        Driver.WriteDescriptor(slot, new PackedDescriptor(address, length, id, flags));
    }

    public void Dispose() => Memory.Dispose();

    private static ushort RoundUpPowerOfTwo(ushort size)
    {
        ushort p = 1;
        while (p < size)
        {
            p <<= 1;
        }

        return p;
    }
}
