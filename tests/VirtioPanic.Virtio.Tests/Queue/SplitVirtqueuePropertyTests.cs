using CsCheck;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

public sealed class SplitVirtqueuePropertyTests
{
    private const ulong Mib = 1UL << 20;

    // A chain as the driver builds it: readable buffers, then writable ones; maybe indirect.
    private sealed record ChainSpec(DriverBuffer[] Buffers, bool Indirect);

    private static readonly Gen<ChainSpec> s_chain =
        Gen.Int[1, 4].SelectMany(count =>
            Gen.Select(
                Gen.Int[0, count],
                Gen.Select(Gen.UInt[0, 4000], Gen.UInt[1, 512]).Array[count],
                Gen.Bool,
                (readable, parts, indirect) => new ChainSpec(
                    [.. parts.Select((p, i) => new DriverBuffer(SplitRing.BufferBase + ((ulong)p.Item1 * 64), p.Item2, DeviceWritable: i >= readable))],
                    indirect)));

    [Test]
    public void Property_RandomValidChains_RoundTripExactly()
    {
        Gen.Select(s_chain.Array[1, 12], Gen.Bool, Gen.Bool).Sample((chains, eventIndex, indirect) =>
        {
            VirtqueueFeatures features = (eventIndex ? VirtqueueFeatures.EventIndex : 0) | (indirect ? VirtqueueFeatures.IndirectDescriptors : 0);
            using var ring = new SplitRing(size: 64, features: features);
            Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));

            var expected = new Dictionary<ushort, ChainSpec>();
            var order = new List<ushort>();
            foreach (ChainSpec spec in chains)
            {
                ushort head;
                bool added = indirect && spec.Indirect ? ring.Driver.TryAddIndirect(spec.Buffers, out head) : ring.Driver.TryAdd(spec.Buffers, out head);
                Assert.That(added, Is.True);
                expected[head] = spec;
                order.Add(head);
            }

            ring.Driver.Publish();
            var seen = new List<ushort>();
            while (ring.Queue.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok)
            {
                ChainSpec spec = expected[chain.Token.Id];
                seen.Add(chain.Token.Id);
                int readable = spec.Buffers.Count(b => !b.DeviceWritable);
                Assert.That(chain.Readable.Length, Is.EqualTo(readable));
                Assert.That(chain.Buffers.Length, Is.EqualTo(spec.Buffers.Length));
                for (int i = 0; i < spec.Buffers.Length; i++)
                {
                    Assert.That((chain.Buffers[i].GuestAddress, chain.Buffers[i].Length), Is.EqualTo((spec.Buffers[i].Address, spec.Buffers[i].Length)));
                }

                Assert.That(chain.ReadableLength + chain.WritableLength, Is.EqualTo((uint)spec.Buffers.Sum(b => (long)b.Length)));
                ring.Queue.AddUsed(chain.Token, chain.WritableLength);
            }

            ring.Queue.FlushUsed();
            var reaped = new List<UsedBuffer>();
            while (ring.Driver.TryGetUsed(out UsedBuffer used) == UsedBufferStatus.Ok)
            {
                reaped.Add(used);
            }

            Assert.That(seen, Is.EqualTo(order));
            Assert.That(reaped.Select(u => u.Id), Is.EqualTo(order));
            Assert.That(reaped.Select(u => u.Length), Is.EqualTo(order.Select(h => (uint)expected[h].Buffers.Where(b => b.DeviceWritable).Sum(b => (long)b.Length))));
            Assert.That(ring.Queue.Status, Is.EqualTo(VirtqueueStatus.Ok));
        }, iter: 300, threads: 1);
    }

    // Random bytes as ring memory: descriptors, ring entries and indices are garbage, biased so
    // that some addresses land inside (and at the edges of) the fenced regions. Popping must end
    // in chains whose every buffer is inside guest memory, or in a typed, sticky error; it never
    // throws. The regions are guarded by inaccessible pages and separated by holes, so a read or
    // write outside guest memory would fault and crash the run.
    [Test]
    public void Property_RandomRingMemory_NeverThrowsAndOnlyHandsOutGuestMemory()
    {
        Gen.Select(Gen.Byte.Array[RandomRingMemory.SplitNoiseBytes], Gen.Int[0, int.MaxValue], Gen.Int[0, 7]).Sample((noise, seed, bits) =>
        {
            using RandomRingMemory ring = RandomRingMemory.Split(noise, seed, bits);
            GuestMemory memory = ring.Memory;
            Virtqueue queue = ring.Queue;
            const int size = RandomRingMemory.SplitSize;
            VirtqueueStatus last = VirtqueueStatus.Ok;
            Span<byte> sink = stackalloc byte[64];
            for (int i = 0; i < 2 * size; i++)
            {
                queue.DisableNotification();
                last = queue.TryPopChain(out DescriptorChain chain);
                if (last != VirtqueueStatus.Ok)
                {
                    break;
                }

                Assert.That(chain.Buffers.Length, Is.InRange(1, queue.MaxChainLength));
                foreach (GuestMemorySlice buffer in chain.Buffers)
                {
                    Assert.That(buffer.Length, Is.Positive);
                    Assert.That(memory.CheckRange(buffer.GuestAddress, buffer.Length), Is.EqualTo(GuestMemoryStatus.Ok));
                }

                // Touch bytes handed out: reads of readable buffers, writes of writable ones.
                chain.CopyFromReadable(sink);
                chain.CopyToWritable(sink);
                Assert.That(queue.AddUsed(chain.Token, chain.WritableLength), Is.EqualTo(VirtqueueStatus.Ok));
                queue.FlushUsed();
                queue.EnableNotification();
            }

            if (last is not (VirtqueueStatus.Ok or VirtqueueStatus.Empty))
            {
                Assert.That(queue.TryPopChain(out _), Is.EqualTo(last), "errors are sticky");
                Assert.That(queue.Status, Is.EqualTo(last));
            }
        }, iter: 400);
    }
}
