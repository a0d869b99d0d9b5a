using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// A guest (driver-side ring) and a device (Virtqueue) sharing one split ring in real guest
// memory. Tests build good or deliberately broken rings through the driver and pop them through
// the device.
internal sealed class SplitRing : IDisposable
{
    internal const ulong MemorySize = 16UL << 20;
    internal const ulong BufferBase = 8UL << 20;   // data buffers live in the upper half

    internal SplitRing(ushort size = 16, VirtqueueFeatures features = VirtqueueFeatures.None, int maxChainLength = 0, GuestMemory? memory = null, int maxIndirect = 8)
    {
        Memory = memory ?? GuestMemory.CreateAnonymous(MemorySize);
        Allocator = new GuestAllocator(Memory, 0x1000, (4UL << 20) - 0x1000);
        Driver = SplitRingDriver.Allocate(Allocator, size, (features & VirtqueueFeatures.EventIndex) != 0, maxIndirect);
        Queue = new Virtqueue(size, maxChainLength);
        Features = features;
    }

    internal GuestMemory Memory { get; }

    internal GuestAllocator Allocator { get; }

    internal SplitRingDriver Driver { get; }

    internal Virtqueue Queue { get; }

    internal VirtqueueFeatures Features { get; }

    internal static DriverBuffer Readable(ulong offset, uint length) => new(BufferBase + offset, length, DeviceWritable: false);

    internal static DriverBuffer Writable(ulong offset, uint length) => new(BufferBase + offset, length, DeviceWritable: true);

    internal VirtqueueStatus Activate() => Queue.Activate(Memory, Driver.Config, Features);

    internal ushort Add(params DriverBuffer[] buffers)
    {
        if (!Driver.TryAdd(buffers, out ushort head))
        {
            throw new InvalidOperationException("ring full");
        }

        return head;
    }

    internal ushort AddAndPublish(params DriverBuffer[] buffers)
    {
        ushort head = Add(buffers);
        Driver.Publish();
        return head;
    }

    // Publishes a chain whose descriptors the test wrote by hand, with head `head`.
    internal void PublishRawHead(ushort head)
    {
        Driver.WriteAvailEntry(Driver.AvailIndex, head);
        Driver.StoreAvailIndex((ushort)(Driver.AvailIndex + 1));
    }

    public void Dispose() => Memory.Dispose();
}
