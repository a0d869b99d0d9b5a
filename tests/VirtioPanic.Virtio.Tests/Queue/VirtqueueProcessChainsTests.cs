using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// The batch API must behave exactly like TryPopChain + AddUsed, for both formats.
public sealed class VirtqueueProcessChainsTests
{
    private struct Recorder : IDescriptorChainHandler
    {
        internal List<(ushort Id, int Buffers, uint Writable)> Seen;
        internal Func<ushort, bool>? Keep;
        internal List<ChainToken> Kept;

        public bool Handle(scoped in DescriptorChain chain, out uint writtenLength)
        {
            Seen.Add((chain.Token.Id, chain.Buffers.Length, chain.WritableLength));
            writtenLength = chain.WritableLength;
            if (Keep?.Invoke(chain.Token.Id) == true)
            {
                Kept.Add(chain.Token);
                return false;
            }

            return true;
        }
    }

    [TestCase(VirtqueueFormat.Split)]
    [TestCase(VirtqueueFormat.Packed)]
    public void ProcessChains_Budget_HandlesAtMostMaxChainsPerCall(VirtqueueFormat format)
    {
        using var ring = RingPair.Create(format, 16, VirtqueueFeatures.None);
        for (int i = 0; i < 10; i++)
        {
            Add(ring, new DriverBuffer(RingPair.BufferBase + ((ulong)i * 16), 16, true));
        }

        var handler = new Recorder { Seen = [], Kept = [] };
        VirtqueueStatus first = ring.Queue.ProcessChains(ref handler, 4, out int firstCount);
        VirtqueueStatus second = ring.Queue.ProcessChains(ref handler, 100, out int secondCount);

        using (Assert.EnterMultipleScope())
        {
            Assert.That((first, firstCount), Is.EqualTo((VirtqueueStatus.Ok, 4)));
            Assert.That((second, secondCount), Is.EqualTo((VirtqueueStatus.Empty, 6)));
            Assert.That(handler.Seen, Has.Count.EqualTo(10));
        }
    }

    [TestCase(VirtqueueFormat.Split)]
    [TestCase(VirtqueueFormat.Packed)]
    public void ProcessChains_MixedShapesAndHeldChains_CompleteExactlyOnce(VirtqueueFormat format)
    {
        using var ring = RingPair.Create(format, 32, VirtqueueFeatures.IndirectDescriptors);
        var ids = new List<ushort>();
        for (int i = 0; i < 12; i++)
        {
            DriverBuffer[] buffers = (i % 3) switch
            {
                0 => [new DriverBuffer(RingPair.BufferBase, 8, true)],
                1 => [new DriverBuffer(RingPair.BufferBase, 4, false), new DriverBuffer(RingPair.BufferBase + 64, 8, true)],
                _ => [new DriverBuffer(RingPair.BufferBase, 4, false), new DriverBuffer(RingPair.BufferBase + 64, 4, false), new DriverBuffer(RingPair.BufferBase + 128, 12, true)],
            };
            bool added = i % 4 == 3 ? ring.Driver.TryAddIndirect(buffers, out ushort id) : ring.Driver.TryAdd(buffers, out id);
            Assert.That(added, Is.True);
            ids.Add(id);
        }

        ring.Driver.Publish();
        var handler = new Recorder { Seen = [], Kept = [], Keep = id => id % 2 == 1 };
        VirtqueueStatus status = ring.Queue.ProcessChains(ref handler, 64, out int processed);
        foreach (ChainToken token in handler.Kept)
        {
            Assert.That(ring.Queue.AddUsed(token, 99), Is.EqualTo(VirtqueueStatus.Ok));
        }

        ring.Queue.FlushUsed();
        var used = new List<UsedBuffer>();
        while (ring.Driver.TryGetUsed(out UsedBuffer u) == UsedBufferStatus.Ok)
        {
            used.Add(u);
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That((status, processed), Is.EqualTo((VirtqueueStatus.Empty, 12)));
            Assert.That(handler.Seen.Select(s => s.Id), Is.EqualTo(ids));
            Assert.That(used.Select(u => u.Id), Is.EquivalentTo(ids));
            Assert.That(used.Where(u => u.Id % 2 == 1).All(u => u.Length == 99), Is.True);
            Assert.That(used.Where(u => u.Id % 2 == 0).Select(u => u.Length), Is.All.InRange(8u, 12u));
            Assert.That(ring.Driver.InFlightCount, Is.Zero);
        }
    }

    [TestCase(VirtqueueFormat.Split)]
    [TestCase(VirtqueueFormat.Packed)]
    public void ProcessChains_BadChainAfterGoodOnes_HandlesTheGoodOnesThenStops(VirtqueueFormat format)
    {
        using var ring = RingPair.Create(format, 16, VirtqueueFeatures.None);
        Add(ring, new DriverBuffer(RingPair.BufferBase, 8, true));
        Add(ring, new DriverBuffer(RingPair.BufferBase, 8, true));
        Add(ring, new DriverBuffer(1UL << 40, 8, true));
        Add(ring, new DriverBuffer(RingPair.BufferBase, 8, true));

        var handler = new Recorder { Seen = [], Kept = [] };
        VirtqueueStatus status = ring.Queue.ProcessChains(ref handler, 64, out int processed);
        ring.Queue.FlushUsed();
        int reaped = 0;
        while (ring.Driver.TryGetUsed(out _) == UsedBufferStatus.Ok)
        {
            reaped++;
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That((status, processed, reaped), Is.EqualTo((VirtqueueStatus.BufferOutOfRange, 2, 2)));
            Assert.That(ring.Queue.ProcessChains(ref handler, 64, out int again), Is.EqualTo(VirtqueueStatus.BufferOutOfRange));
            Assert.That(again, Is.Zero);
        }
    }

    [Test]
    public void ProcessChains_NotActivated_ReturnsNotReady()
    {
        var queue = new Virtqueue(16);
        var handler = new Recorder { Seen = [], Kept = [] };

        Assert.That(queue.ProcessChains(ref handler, 8, out int processed), Is.EqualTo(VirtqueueStatus.NotReady));
        Assert.That(processed, Is.Zero);
    }

    private static void Add(RingPair ring, params DriverBuffer[] buffers)
    {
        Assert.That(ring.Driver.TryAdd(buffers, out _), Is.True);
        ring.Driver.Publish();
    }
}
