using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// Format-neutral pair of a guest driver ring and the device queue, for tests that must hold for
// split and packed rings alike.
internal sealed class RingPair : IDisposable
{
    internal const ulong BufferBase = 8UL << 20;

    private RingPair(GuestMemory memory, IVirtqueueDriver driver, Virtqueue queue, VirtqueueFeatures features)
    {
        Memory = memory;
        Driver = driver;
        Queue = queue;
        Features = features;
    }

    internal GuestMemory Memory { get; }

    internal IVirtqueueDriver Driver { get; }

    internal Virtqueue Queue { get; }

    internal VirtqueueFeatures Features { get; }

    internal static RingPair Create(VirtqueueFormat format, ushort size, VirtqueueFeatures features, int maxIndirect = 8)
    {
        GuestMemory memory = GuestMemory.CreateAnonymous(16UL << 20);
        var allocator = new GuestAllocator(memory, 0x1000, (4UL << 20) - 0x1000);
        bool eventIndex = (features & VirtqueueFeatures.EventIndex) != 0;
        IVirtqueueDriver driver = format == VirtqueueFormat.Split
            ? SplitRingDriver.Allocate(allocator, size, eventIndex, maxIndirect)
            : PackedRingDriver.Allocate(allocator, size, eventIndex, maxIndirect);
        VirtqueueFeatures all = features | (format == VirtqueueFormat.Packed ? VirtqueueFeatures.Packed : 0);
        var queue = new Virtqueue((ushort)System.Numerics.BitOperations.RoundUpToPowerOf2(size));
        VirtqueueStatus status = queue.Activate(memory, driver.Config, all);
        if (status != VirtqueueStatus.Ok)
        {
            throw new InvalidOperationException($"activation failed: {status}");
        }

        return new RingPair(memory, driver, queue, all);
    }

    public void Dispose() => Memory.Dispose();
}
