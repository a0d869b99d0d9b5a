using CsCheck;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// ProcessChains has its own inlined copy of the pop fast paths (for speed); these properties pin
// it to TryPopChain + AddUsed: on identical random ring memory both must hand out the same chains,
// stop with the same status, and leave the same bytes in guest memory.
public sealed class ProcessChainsEquivalencePropertyTests
{
    private const ulong Mib = 1UL << 20;

    [Test]
    public void Property_Split_ProcessChainsMatchesTryPopChain_OnRandomRingMemory()
    {
        int chains = 0;
        int multi = 0;
        Gen.Select(Gen.Byte.Array[(16 * 32) + 6 + (2 * 32) + (16 * 64)], Gen.Int[0, int.MaxValue], Gen.Int[0, 7]).Sample((noise, seed, bits) =>
        {
            (string Log, VirtqueueStatus Status, byte[] Ring) one = Run(BuildSplit(noise, seed, bits), batch: false);
            (string Log, VirtqueueStatus Status, byte[] Ring) batch = Run(BuildSplit(noise, seed, bits), batch: true);
            Assert.That(batch.Log, Is.EqualTo(one.Log));
            Assert.That(batch.Status, Is.EqualTo(one.Status));
            Assert.That(batch.Ring, Is.EqualTo(one.Ring), "same used ring and indices in guest memory");
            Interlocked.Add(ref chains, one.Log.Count(c => c == '\n'));
            Interlocked.Add(ref multi, one.Log.Split('\n').Count(line => line.Count(c => c == '+') > 1));
        }, iter: 300);
        Assert.That(chains, Is.GreaterThan(50), "the generator reaches real chains");
        Assert.That(multi, Is.GreaterThan(5), "some with several buffers");
    }

    [Test]
    public void Property_Packed_ProcessChainsMatchesTryPopChain_OnRandomRingMemory()
    {
        int chains = 0;
        int multi = 0;
        Gen.Select(Gen.Byte.Array[(16 * 24) + (16 * 64)], Gen.Int[0, int.MaxValue], Gen.Int[0, 7]).Sample((noise, seed, bits) =>
        {
            (string Log, VirtqueueStatus Status, byte[] Ring) one = Run(BuildPacked(noise, seed, bits), batch: false);
            (string Log, VirtqueueStatus Status, byte[] Ring) batch = Run(BuildPacked(noise, seed, bits), batch: true);
            Assert.That(batch.Log, Is.EqualTo(one.Log));
            Assert.That(batch.Status, Is.EqualTo(one.Status));
            Assert.That(batch.Ring, Is.EqualTo(one.Ring), "same used descriptors in guest memory");
            Interlocked.Add(ref chains, one.Log.Count(c => c == '\n'));
            Interlocked.Add(ref multi, one.Log.Split('\n').Count(line => line.Count(c => c == '+') > 1));
        }, iter: 300);
        Assert.That(chains, Is.GreaterThan(50), "the generator reaches real chains");
        Assert.That(multi, Is.GreaterThan(5), "some with several buffers");
    }

    // Pops up to twice the queue size, completing each chain at once, then publishes.
    private static (string Log, VirtqueueStatus Status, byte[] Ring) Run(Scenario scenario, bool batch)
    {
        using GuestMemory memory = scenario.Memory;
        var log = new System.Text.StringBuilder();
        VirtqueueStatus status;
        int budget = 2 * scenario.Queue.Size;
        if (batch)
        {
            var handler = new Recorder { Log = log };
            status = scenario.Queue.ProcessChains(ref handler, budget, out _);
        }
        else
        {
            status = VirtqueueStatus.Ok;
            for (int i = 0; i < budget; i++)
            {
                status = scenario.Queue.TryPopChain(out DescriptorChain chain);
                if (status != VirtqueueStatus.Ok)
                {
                    break;
                }

                Recorder.Append(log, chain);
                Assert.That(scenario.Queue.AddUsed(chain.Token, chain.WritableLength), Is.EqualTo(VirtqueueStatus.Ok));
            }
        }

        scenario.Queue.FlushUsed();
        byte[] ring = new byte[scenario.RingBytes];
        Assert.That(memory.TryRead(scenario.RingAddress, ring), Is.True);
        return (log.ToString(), status, ring);
    }

    private static Scenario BuildSplit(byte[] noise, int seed, int bits)
    {
        var memory = new GuestMemory(
            GuestMemoryRegion.AllocateAnonymous(0, Mib),
            GuestMemoryRegion.AllocateAnonymous(2 * Mib, Mib),
            GuestMemoryRegion.AllocateAnonymous(8 * Mib, 64 * 1024));
        const ushort size = 32;
        var allocator = new GuestAllocator(memory, 0x1000, Mib - 0x1000);
        SplitRingDriver driver = SplitRingDriver.Allocate(allocator, size, eventIndex: (bits & 1) != 0);
        VirtqueueConfig config = driver.Config;
        ulong table = allocator.Allocate(16 * 64, 16);
        int o = 0;
        memory.TryWrite(config.DescriptorArea, noise.AsSpan(o, 16 * size));
        o += 16 * size;
        memory.TryWrite(config.DriverArea, noise.AsSpan(o, 6 + (2 * size)));
        o += 6 + (2 * size);
        memory.TryWrite(table, noise.AsSpan(o, 16 * 64));
        var rng = new Random(seed);
        ulong[] anchors = [0, Mib - 8, 2 * Mib, 3 * Mib - 16, 8 * Mib, table, table + 16, ulong.MaxValue - 8];
        for (uint i = 0; i < size; i++)
        {
            ulong at = config.DescriptorArea + (i * 16);
            if (rng.Next(3) != 0)
            {
                memory.TryWriteUInt64(at, Address(rng, anchors));
                memory.TryWriteUInt32(at + 8, (uint)rng.Next(0, 200));
                memory.TryWriteUInt16(at + 12, Flags(rng));
                memory.TryWriteUInt16(at + 14, (ushort)rng.Next(0, size + 2));
            }
        }

        // Avail entries mostly in range, so chains get walked rather than rejected at the head.
        for (uint i = 0; i < size; i++)
        {
            if (rng.Next(4) != 0)
            {
                memory.TryWriteUInt16(config.DriverArea + SplitRingLayout.AvailRing + (i * 2), (ushort)rng.Next(size));
            }
        }

        memory.TryWriteUInt16(config.DriverArea + SplitRingLayout.AvailIndex, (ushort)(rng.Next(8) == 0 ? rng.Next(33, 65536) : rng.Next(1, 33)));
        VirtqueueFeatures features = ((bits & 1) != 0 ? VirtqueueFeatures.EventIndex : 0) | ((bits & 2) != 0 ? VirtqueueFeatures.IndirectDescriptors : 0);
        var queue = new Virtqueue(size, maxChainLength: (bits & 4) != 0 ? 4 : 0);
        Assert.That(queue.Activate(memory, config, features), Is.EqualTo(VirtqueueStatus.Ok));
        return new Scenario(memory, queue, config.DeviceArea, (int)SplitRingLayout.UsedRingSize(size));
    }

    private static Scenario BuildPacked(byte[] noise, int seed, int bits)
    {
        var memory = new GuestMemory(
            GuestMemoryRegion.AllocateAnonymous(0, Mib),
            GuestMemoryRegion.AllocateAnonymous(2 * Mib, Mib),
            GuestMemoryRegion.AllocateAnonymous(8 * Mib, 64 * 1024));
        const ushort size = 24;
        var allocator = new GuestAllocator(memory, 0x1000, Mib - 0x1000);
        PackedRingDriver driver = PackedRingDriver.Allocate(allocator, size, eventIndex: (bits & 1) != 0);
        VirtqueueConfig config = driver.Config;
        ulong table = allocator.Allocate(16 * 64, 16);
        memory.TryWrite(config.DescriptorArea, noise.AsSpan(0, 16 * size));
        memory.TryWrite(table, noise.AsSpan(16 * size, 16 * 64));
        var rng = new Random(seed);
        ulong[] anchors = [0, Mib - 8, 2 * Mib, 3 * Mib - 16, 8 * Mib, table, table + 16, ulong.MaxValue - 8];
        for (uint i = 0; i < size; i++)
        {
            ulong at = config.DescriptorArea + (i * 16);
            if (rng.Next(3) != 0)
            {
                memory.TryWriteUInt64(at, Address(rng, anchors));
                memory.TryWriteUInt32(at + 8, (uint)rng.Next(0, 200));
                memory.TryWriteUInt16(at + 12, (ushort)rng.Next(0, size + 2));
                memory.TryWriteUInt16(at + 14, (ushort)(Flags(rng) | (rng.Next(4) == 0 ? 0 : 0x80)));
            }
        }

        VirtqueueFeatures features = VirtqueueFeatures.Packed | ((bits & 1) != 0 ? VirtqueueFeatures.EventIndex : 0) | ((bits & 2) != 0 ? VirtqueueFeatures.IndirectDescriptors : 0);
        var queue = new Virtqueue(32, maxChainLength: (bits & 4) != 0 ? 4 : 0);
        Assert.That(queue.Activate(memory, config, features), Is.EqualTo(VirtqueueStatus.Ok));
        return new Scenario(memory, queue, config.DescriptorArea, 16 * size);
    }

    // Mostly well-formed buffers (so chains get walked deep), the rest at and beyond the edges.
    private static ulong Address(Random rng, ulong[] anchors) =>
        rng.Next(3) != 0 ? (2 * Mib) + (ulong)rng.Next(0, (int)Mib - 256) : anchors[rng.Next(anchors.Length)] + (ulong)rng.Next(64);

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

    private sealed record Scenario(GuestMemory Memory, Virtqueue Queue, ulong RingAddress, int RingBytes);

    private struct Recorder : IDescriptorChainHandler
    {
        internal System.Text.StringBuilder Log;

        public bool Handle(scoped in DescriptorChain chain, out uint writtenLength)
        {
            Append(Log, chain);
            writtenLength = chain.WritableLength;
            return true;
        }

        internal static void Append(System.Text.StringBuilder log, scoped in DescriptorChain chain)
        {
            log.Append($"id {chain.Token.Id}/{chain.Token.SlotCount} r{chain.Readable.Length} {chain.ReadableLength}/{chain.WritableLength}:");
            foreach (GuestMemorySlice buffer in chain.Buffers)
            {
                log.Append($" {buffer.GuestAddress:x}+{buffer.Length}");
            }

            log.Append('\n');
        }
    }
}
