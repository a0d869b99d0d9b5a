using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// A split queue translates a chain into scratch storage that starts at ChainScratch.InitialScratch
// entries and grows on demand up to MaxChainLength (a watchdog queue of 256 entries keeps 192 bytes,
// not 6 KiB, until a driver sends a long chain): the general walk grows it and walks the chain
// again. Growing must not change what a chain is: every buffer in order, readable before writable,
// the same bound as before. (The packed queue keeps a full-size array; its row checks the same.)
public sealed class ChainScratchTests
{
    private const ushort Size = 64;

    [TestCase(false)]
    [TestCase(true)]
    public void Split_ChainsLongerThanTheFirstScratch_AreTranslatedWhole(bool indirect)
    {
        // One ring for chains of 3, 40 and 9 buffers (52 of its 64 descriptors: the scratch grows
        // once and serves the shorter chain after it), one for a chain as long as the ring.
        foreach (int[] lengths in new[] { new[] { 3, 40, 9 }, new[] { (int)Size } })
        {
            using var ring = new SplitRing(size: Size, features: indirect ? VirtqueueFeatures.IndirectDescriptors : VirtqueueFeatures.None, maxIndirect: Size);
            Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
            foreach (int length in lengths)
            {
                DriverBuffer[] buffers = Chain(length, SplitRing.Readable, SplitRing.Writable);
                Assert.That(indirect ? ring.Driver.TryAddIndirect(buffers, out _) : ring.Driver.TryAdd(buffers, out _), Is.True, $"the driver added {length} buffers");
                ring.Driver.Publish();
                Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok), $"{length} buffers");
                AssertChain(chain, buffers);
                Assert.That(ring.Queue.AddUsed(chain.Token, 0), Is.EqualTo(VirtqueueStatus.Ok));
                _ = ring.Queue.FlushUsed();
            }
        }
    }

    [Test]
    public void Packed_ChainsLongerThanTheFirstScratch_AreTranslatedWhole()
    {
        using var ring = new PackedRing(size: Size);
        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
        foreach (int length in new[] { 3, 40, 9 })
        {
            DriverBuffer[] buffers = Chain(length, PackedRing.Readable, PackedRing.Writable);
            ring.AddAndPublish(buffers);
            Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok), $"{length} buffers");
            AssertChain(chain, buffers);
            Assert.That(ring.Queue.AddUsed(chain.Token, 0), Is.EqualTo(VirtqueueStatus.Ok));
            _ = ring.Queue.FlushUsed();
        }
    }

    // The bound is unchanged: a chain of MaxChainLength buffers passes (the scratch grew 8 → 16 → 20),
    // one more is refused and the queue stays failed.
    [Test]
    public void Split_GrowthStopsAtMaxChainLength()
    {
        using (var ring = new SplitRing(size: Size, maxChainLength: 20))
        {
            Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
            DriverBuffer[] twenty = Chain(20, SplitRing.Readable, SplitRing.Writable);
            ring.AddAndPublish(twenty);
            Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
            AssertChain(chain, twenty);
        }

        using var refused = new SplitRing(size: Size, maxChainLength: 20);
        Assert.That(refused.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
        refused.AddAndPublish(Chain(21, SplitRing.Readable, SplitRing.Writable));
        Assert.Multiple(() =>
        {
            Assert.That(refused.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.ChainTooLong));
            Assert.That(refused.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.ChainTooLong), "and stays failed");
        });
    }

    // length buffers of 8 bytes at distinct offsets: the first third readable, the rest writable.
    private static DriverBuffer[] Chain(int length, Func<ulong, uint, DriverBuffer> readable, Func<ulong, uint, DriverBuffer> writable) =>
        [.. Enumerable.Range(0, length).Select(i => i < (length + 2) / 3 ? readable((ulong)i * 16, 8) : writable((ulong)i * 16, 8))];

    private static void AssertChain(DescriptorChain chain, DriverBuffer[] buffers)
    {
        GuestMemorySlice[] got = chain.Buffers.ToArray();
        int readable = chain.Readable.Length;
        Assert.Multiple(() =>
        {
            Assert.That(got.Select(b => (b.GuestAddress, (uint)b.Length)), Is.EqualTo(buffers.Select(b => (b.Address, b.Length))));
            Assert.That(readable, Is.EqualTo(buffers.Count(b => !b.DeviceWritable)));
        });
    }
}
