using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// EndRound is FlushUsed + EnableNotification with one fence instead of two: on twin rings driven
// through the same seeded script (chains published before and during a round, the driver
// switching interrupts on and off), both endings must give the same answers and leave the same
// bytes in guest memory, for split and packed rings, with and without EVENT_IDX.
public sealed class VirtqueueEndRoundTests
{
    [TestCase(VirtqueueFormat.Split, VirtqueueFeatures.EventIndex)]
    [TestCase(VirtqueueFormat.Split, (VirtqueueFeatures)0)]
    [TestCase(VirtqueueFormat.Packed, VirtqueueFeatures.EventIndex)]
    [TestCase(VirtqueueFormat.Packed, (VirtqueueFeatures)0)]
    public void EndRound_SeededScript_MatchesFlushUsedThenEnableNotification(VirtqueueFormat format, VirtqueueFeatures features)
    {
        using var fused = RingPair.Create(format, 16, features);
        using var separate = RingPair.Create(format, 16, features);
        var random = new Random(1234);
        int notified = 0;
        int more = 0;
        for (int round = 0; round < 400; round++)
        {
            int before = random.Next(0, 4);
            bool lateArrival = random.Next(0, 4) == 0;
            bool interrupts = random.Next(0, 3) != 0;
            (bool Notify, bool More) a = Round(fused, before, lateArrival, interrupts, endRound: true);
            (bool Notify, bool More) b = Round(separate, before, lateArrival, interrupts, endRound: false);
            Assert.That(a, Is.EqualTo(b), $"round {round}");
            notified += a.Notify ? 1 : 0;
            more += a.More ? 1 : 0;
        }

        byte[] left = new byte[64 << 10];
        byte[] right = new byte[64 << 10];
        Assert.That(fused.Memory.TryRead(0x1000, left) && separate.Memory.TryRead(0x1000, right), Is.True);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(left, Is.EqualTo(right), "same rings (used entries, indices, event suppression)");
            Assert.That(fused.Queue.Status, Is.EqualTo(VirtqueueStatus.Ok));
            Assert.That(notified, Is.GreaterThan(20), "the script reaches interrupts");
            Assert.That(more, Is.GreaterThan(20), "and chains arriving while notifications were off");
        }
    }

    [Test]
    public void EndRound_NotActivated_ReturnsFalseAndNoNotification()
    {
        var queue = new Virtqueue(16);
        Assert.That((queue.EndRound(out bool notify), notify), Is.EqualTo((false, false)));
    }

    // One device round: the driver publishes `before` chains, the device processes what it sees,
    // a chain may arrive before the round ends, then the round ends either way. The driver then
    // reaps every used buffer, so the ring never fills.
    private static (bool Notify, bool More) Round(RingPair ring, int before, bool lateArrival, bool interrupts, bool endRound)
    {
        if (interrupts)
        {
            ring.Driver.EnableInterrupts();
        }
        else
        {
            ring.Driver.DisableInterrupts();
        }

        for (int i = 0; i < before; i++)
        {
            Add(ring);
        }

        ring.Driver.Publish();
        ring.Queue.DisableNotification();
        var handler = new Completer();
        ring.Queue.ProcessChains(ref handler, 64, out _);
        if (lateArrival)
        {
            Add(ring);
            ring.Driver.Publish();
        }

        bool notify;
        bool more;
        if (endRound)
        {
            more = ring.Queue.EndRound(out notify);
        }
        else
        {
            notify = ring.Queue.FlushUsed();
            more = ring.Queue.EnableNotification();
        }

        while (ring.Driver.TryGetUsed(out _) == UsedBufferStatus.Ok)
        {
        }

        return (notify, more);
    }

    private static void Add(RingPair ring) =>
        Assert.That(ring.Driver.TryAdd([new DriverBuffer(RingPair.BufferBase, 8, true)], out _), Is.True);

    private struct Completer : IDescriptorChainHandler
    {
        public readonly bool Handle(scoped in DescriptorChain chain, out uint writtenLength)
        {
            writtenLength = chain.WritableLength;
            return true;
        }
    }
}
