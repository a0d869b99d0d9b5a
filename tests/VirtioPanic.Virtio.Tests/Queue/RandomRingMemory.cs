using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

/// <summary>
/// Activated queues over random ring memory for the property tests: garbage everywhere the parser
/// looks, steered so that a good share of descriptors are well formed (so chains get walked deep)
/// and the rest point at and beyond the edges of three fenced regions separated by holes (a read
/// or write outside guest memory would fault and crash the run).
/// </summary>
internal sealed class RandomRingMemory : IDisposable
{
    internal const ulong Mib = 1UL << 20;
    internal const ushort SplitSize = 32;
    internal const ushort PackedSize = 24;

    /// <summary>Noise bytes a split scenario consumes: descriptor table, avail ring, indirect area.</summary>
    internal const int SplitNoiseBytes = (16 * SplitSize) + 6 + (2 * SplitSize) + (16 * 64);

    /// <summary>Noise bytes a packed scenario consumes: descriptor ring, indirect area.</summary>
    internal const int PackedNoiseBytes = (16 * PackedSize) + (16 * 64);

    private RandomRingMemory(GuestMemory memory, Virtqueue queue, ulong ringAddress, int ringBytes)
    {
        Memory = memory;
        Queue = queue;
        RingAddress = ringAddress;
        RingBytes = ringBytes;
    }

    internal GuestMemory Memory { get; }

    internal Virtqueue Queue { get; }

    /// <summary>Where the device writes completions (the used ring, or the packed descriptor ring).</summary>
    internal ulong RingAddress { get; }

    internal int RingBytes { get; }

    /// <summary>A split queue; <paramref name="bits"/>: 1 EVENT_IDX, 2 INDIRECT_DESC, 4 chains limited to 4 buffers.</summary>
    internal static RandomRingMemory Split(byte[] noise, int seed, int bits)
    {
        GuestMemory memory = FencedMemory();
        var allocator = new GuestAllocator(memory, 0x1000, Mib - 0x1000);
        SplitRingDriver driver = SplitRingDriver.Allocate(allocator, SplitSize, eventIndex: (bits & 1) != 0);
        VirtqueueConfig config = driver.Config;
        ulong table = allocator.Allocate(16 * 64, 16);
        int o = 0;
        memory.TryWrite(config.DescriptorArea, noise.AsSpan(o, 16 * SplitSize));
        o += 16 * SplitSize;
        memory.TryWrite(config.DriverArea, noise.AsSpan(o, 6 + (2 * SplitSize)));
        o += 6 + (2 * SplitSize);
        memory.TryWrite(table, noise.AsSpan(o, 16 * 64));
        var rng = new Random(seed);

        // virtq_desc: flags @12, next @14 (virtio 1.2 §2.7.5).
        Scramble(memory, config.DescriptorArea, SplitSize, table, rng, at =>
        {
            memory.TryWriteUInt16(at + 12, Flags(rng));
            memory.TryWriteUInt16(at + 14, (ushort)rng.Next(0, SplitSize + 2));
        });

        // Avail entries mostly in range, so chains get walked rather than rejected at the head;
        // avail.idx mostly plausible, sometimes a runaway.
        for (uint i = 0; i < SplitSize; i++)
        {
            if (rng.Next(4) != 0)
            {
                memory.TryWriteUInt16(config.DriverArea + SplitRingLayout.AvailRing + (i * 2), (ushort)rng.Next(SplitSize));
            }
        }

        memory.TryWriteUInt16(config.DriverArea + SplitRingLayout.AvailIndex, (ushort)(rng.Next(8) == 0 ? rng.Next(SplitSize + 1, 65536) : rng.Next(1, SplitSize + 1)));
        VirtqueueFeatures features = ((bits & 1) != 0 ? VirtqueueFeatures.EventIndex : 0) | ((bits & 2) != 0 ? VirtqueueFeatures.IndirectDescriptors : 0);
        var queue = new Virtqueue(SplitSize, maxChainLength: (bits & 4) != 0 ? 4 : 0);
        Assert.That(queue.Activate(memory, config, features), Is.EqualTo(VirtqueueStatus.Ok));
        return new RandomRingMemory(memory, queue, config.DeviceArea, (int)SplitRingLayout.UsedRingSize(SplitSize));
    }

    /// <summary>A packed queue; <paramref name="bits"/> as for <see cref="Split"/>.</summary>
    internal static RandomRingMemory Packed(byte[] noise, int seed, int bits)
    {
        GuestMemory memory = FencedMemory();
        var allocator = new GuestAllocator(memory, 0x1000, Mib - 0x1000);
        PackedRingDriver driver = PackedRingDriver.Allocate(allocator, PackedSize, eventIndex: (bits & 1) != 0);
        VirtqueueConfig config = driver.Config;
        ulong table = allocator.Allocate(16 * 64, 16);
        memory.TryWrite(config.DescriptorArea, noise.AsSpan(0, 16 * PackedSize));
        memory.TryWrite(table, noise.AsSpan(16 * PackedSize, 16 * 64));
        var rng = new Random(seed);

        // pvirtq_desc: id @12, flags @14 (§2.8.13); AVAIL set (wrap counter 1) three times in four.
        Scramble(memory, config.DescriptorArea, PackedSize, table, rng, at =>
        {
            memory.TryWriteUInt16(at + 12, (ushort)rng.Next(0, PackedSize + 2));
            memory.TryWriteUInt16(at + 14, (ushort)(Flags(rng) | (rng.Next(4) == 0 ? 0 : 0x80)));
        });

        VirtqueueFeatures features = VirtqueueFeatures.Packed | ((bits & 1) != 0 ? VirtqueueFeatures.EventIndex : 0) | ((bits & 2) != 0 ? VirtqueueFeatures.IndirectDescriptors : 0);
        var queue = new Virtqueue(32, maxChainLength: (bits & 4) != 0 ? 4 : 0);
        Assert.That(queue.Activate(memory, config, features), Is.EqualTo(VirtqueueStatus.Ok));
        return new RandomRingMemory(memory, queue, config.DescriptorArea, 16 * PackedSize);
    }

    public void Dispose() => Memory.Dispose();

    private static GuestMemory FencedMemory() => new(
        GuestMemoryRegion.AllocateAnonymous(0, Mib),
        GuestMemoryRegion.AllocateAnonymous(2 * Mib, Mib),
        GuestMemoryRegion.AllocateAnonymous(8 * Mib, 64 * 1024));

    // Two descriptors in three get an address and length (the format-specific tail writes the rest).
    private static void Scramble(GuestMemory memory, ulong area, ushort count, ulong table, Random rng, Action<ulong> tail)
    {
        ulong[] anchors = [0, Mib - 8, 2 * Mib, (3 * Mib) - 16, 8 * Mib, table, table + 16, ulong.MaxValue - 8];
        for (uint i = 0; i < count; i++)
        {
            ulong at = area + (i * 16);
            if (rng.Next(3) != 0)
            {
                ulong address = rng.Next(3) != 0 ? (2 * Mib) + (ulong)rng.Next(0, (int)Mib - 256) : anchors[rng.Next(anchors.Length)] + (ulong)rng.Next(64);
                memory.TryWriteUInt64(at, address);
                memory.TryWriteUInt32(at + 8, (uint)rng.Next(0, 200));
                tail(at);
            }
        }
    }

    // NEXT, WRITE, both or neither most of the time; INDIRECT or an unknown bit now and then.
    private static ushort Flags(Random rng) => rng.Next(10) switch
    {
        < 3 => 1,
        < 5 => 2,
        < 6 => 3,
        < 8 => 0,
        8 => 4,
        _ => (ushort)rng.Next(8, 16),
    };
}
