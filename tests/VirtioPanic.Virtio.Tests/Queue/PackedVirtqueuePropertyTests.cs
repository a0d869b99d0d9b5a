using CsCheck;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

public sealed class PackedVirtqueuePropertyTests
{
    private const ulong Mib = 1UL << 20;

    [Test]
    public void Property_RandomValidChains_RoundTripExactly_InRandomCompletionOrder()
    {
        var chain = Gen.Int[1, 3].SelectMany(count =>
            Gen.Select(Gen.Int[0, count], Gen.Select(Gen.UInt[0, 4000], Gen.UInt[1, 512]).Array[count], Gen.Bool,
                (readable, parts, indirect) => (Buffers: parts.Select((p, i) => new DriverBuffer(RingPair.BufferBase + ((ulong)p.Item1 * 64), p.Item2, i >= readable)).ToArray(), Indirect: indirect)));

        Gen.Select(chain.Array[1, 40], Gen.Bool, Gen.Int[0, 1000], Gen.Int[5, 24]).Sample((chains, eventIndex, shuffleSeed, size) =>
        {
            VirtqueueFeatures features = VirtqueueFeatures.IndirectDescriptors | (eventIndex ? VirtqueueFeatures.EventIndex : 0);
            using var ring = RingPair.Create(VirtqueueFormat.Packed, (ushort)size, features);
            var rng = new Random(shuffleSeed);
            var expected = new Dictionary<ushort, DriverBuffer[]>();
            var held = new List<ChainToken>();
            int completed = 0;
            var reaped = new List<UsedBuffer>();
            foreach ((DriverBuffer[] buffers, bool indirect) in chains)
            {
                // Make room: complete held chains in random order until this chain fits.
                while (ring.Driver.FreeCount < (indirect ? 1 : buffers.Length) || ring.Driver.InFlightCount == size)
                {
                    int pick = rng.Next(held.Count);
                    Assert.That(ring.Queue.AddUsed(held[pick], (uint)held[pick].Id), Is.EqualTo(VirtqueueStatus.Ok));
                    held.RemoveAt(pick);
                    completed++;
                    ring.Queue.FlushUsed();
                    while (ring.Driver.TryGetUsed(out UsedBuffer u) == UsedBufferStatus.Ok)
                    {
                        reaped.Add(u);
                    }
                }

                bool added = indirect ? ring.Driver.TryAddIndirect(buffers, out ushort id) : ring.Driver.TryAdd(buffers, out id);
                Assert.That(added, Is.True);
                ring.Driver.Publish();
                expected[id] = buffers;
                Assert.That(ring.Queue.TryPopChain(out DescriptorChain popped), Is.EqualTo(VirtqueueStatus.Ok));
                Assert.That(popped.Token.Id, Is.EqualTo(id));
                Assert.That(popped.Token.SlotCount, Is.EqualTo(indirect ? 1 : buffers.Length));
                Assert.That(popped.Buffers.Length, Is.EqualTo(buffers.Length));
                for (int i = 0; i < buffers.Length; i++)
                {
                    Assert.That((popped.Buffers[i].GuestAddress, popped.Buffers[i].Length), Is.EqualTo((buffers[i].Address, buffers[i].Length)));
                }

                Assert.That(popped.Readable.Length, Is.EqualTo(buffers.Count(b => !b.DeviceWritable)));
                held.Add(popped.Token);
            }

            foreach (ChainToken token in held)
            {
                Assert.That(ring.Queue.AddUsed(token, token.Id), Is.EqualTo(VirtqueueStatus.Ok));
                completed++;
            }

            ring.Queue.FlushUsed();
            while (ring.Driver.TryGetUsed(out UsedBuffer u) == UsedBufferStatus.Ok)
            {
                reaped.Add(u);
            }

            Assert.That(completed, Is.EqualTo(chains.Length));
            Assert.That(reaped, Has.Count.EqualTo(chains.Length));
            Assert.That(reaped.All(u => u.Length == u.Id), Is.True);
            Assert.That(ring.Driver.InFlightCount, Is.Zero);
            Assert.That(ring.Queue.Status, Is.EqualTo(VirtqueueStatus.Ok));
        }, iter: 300, threads: 1);
    }

    // Random bytes as the descriptor ring (with biased addresses and flag bits so that many slots
    // look available): popping ends in chains inside guest memory or in a sticky typed error, never
    // an exception; fenced regions with holes make any stray access fault.
    [Test]
    public void Property_RandomRingMemory_NeverThrowsAndOnlyHandsOutGuestMemory()
    {
        Gen.Select(Gen.Byte.Array[RandomRingMemory.PackedNoiseBytes], Gen.Int[0, int.MaxValue], Gen.Int[0, 7]).Sample((noise, seed, bits) =>
        {
            using RandomRingMemory ring = RandomRingMemory.Packed(noise, seed, bits);
            GuestMemory memory = ring.Memory;
            Virtqueue queue = ring.Queue;
            const int size = RandomRingMemory.PackedSize;
            Span<byte> sink = stackalloc byte[64];
            VirtqueueStatus last = VirtqueueStatus.Ok;
            for (int i = 0; i < 3 * size; i++)
            {
                last = queue.TryPopChain(out DescriptorChain chain);
                if (last != VirtqueueStatus.Ok)
                {
                    break;
                }

                foreach (GuestMemorySlice buffer in chain.Buffers)
                {
                    Assert.That(memory.CheckRange(buffer.GuestAddress, buffer.Length), Is.EqualTo(GuestMemoryStatus.Ok));
                }

                chain.CopyFromReadable(sink);
                chain.CopyToWritable(sink);
                Assert.That(queue.AddUsed(chain.Token, chain.WritableLength), Is.EqualTo(VirtqueueStatus.Ok));
                queue.FlushUsed();
                queue.EnableNotification();
            }

            if (last is not (VirtqueueStatus.Ok or VirtqueueStatus.Empty))
            {
                Assert.That(queue.TryPopChain(out _), Is.EqualTo(last));
            }
        }, iter: 400);
    }
}
