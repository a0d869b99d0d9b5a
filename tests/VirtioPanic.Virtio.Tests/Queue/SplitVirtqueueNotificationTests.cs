using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// Used ring publication and notification suppression in both directions
// (virtio 1.2 §2.7.7, §2.7.8, §2.7.10).
public sealed class SplitVirtqueueNotificationTests
{
    [Test]
    public void FlushUsed_Batch_PublishesUsedIndexOnceAfterAllElements()
    {
        using var ring = new SplitRing();
        ring.Activate();
        for (int i = 0; i < 3; i++)
        {
            ring.AddAndPublish(SplitRing.Writable((ulong)i * 8, 8));
        }

        for (int i = 0; i < 3; i++)
        {
            Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
            Assert.That(ring.Queue.AddUsed(chain.Token, (uint)(i + 1)), Is.EqualTo(VirtqueueStatus.Ok));
            Assert.That(ring.Driver.LoadUsedIndex(), Is.Zero, "nothing is visible before the flush");
        }

        ring.Queue.FlushUsed();

        var lengths = new List<uint>();
        while (ring.Driver.TryGetUsed(out UsedBuffer used) == UsedBufferStatus.Ok)
        {
            lengths.Add(used.Length);
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ring.Driver.LoadUsedIndex(), Is.EqualTo((ushort)3));
            Assert.That(lengths, Is.EqualTo(new uint[] { 1, 2, 3 }));
        }
    }

    [Test]
    public void AddUsed_MoreCompletionsThanPops_ReturnsInvalidUsedEntry()
    {
        using var ring = new SplitRing();
        ring.Activate();
        ring.AddAndPublish(SplitRing.Writable(0, 8));
        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
        ChainToken token = chain.Token;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ring.Queue.AddUsed(token, 8), Is.EqualTo(VirtqueueStatus.Ok));
            Assert.That(ring.Queue.AddUsed(token, 8), Is.EqualTo(VirtqueueStatus.InvalidUsedEntry));
        }
    }

    [Test]
    public void AddUsed_IdOutsideTable_ReturnsInvalidUsedEntry()
    {
        using var ring = new SplitRing(size: 16);
        ring.Activate();
        ring.AddAndPublish(SplitRing.Writable(0, 8));
        ring.Queue.TryPopChain(out _);

        Assert.That(ring.Queue.AddUsed(new ChainToken(16, 1), 0), Is.EqualTo(VirtqueueStatus.InvalidUsedEntry));
    }

    [Test]
    public void FlushUsed_NothingAdded_DoesNotNotify()
    {
        using var ring = new SplitRing();
        ring.Activate();

        Assert.That(ring.Queue.FlushUsed(), Is.False);
    }

    [Test]
    public void FlushUsed_WithoutEventIdx_NotifiesUnlessNoInterrupt()
    {
        using var ring = new SplitRing();
        ring.Activate();

        bool withFlagClear = CompleteOne(ring);
        ring.Driver.WriteAvailFlags(SplitRingLayout.AvailFlagNoInterrupt);
        bool withNoInterrupt = CompleteOne(ring);
        ring.Driver.WriteAvailFlags(0);
        bool clearedAgain = CompleteOne(ring);

        Assert.That((withFlagClear, withNoInterrupt, clearedAgain), Is.EqualTo((true, false, true)));
    }

    [Test]
    public void FlushUsed_WithEventIdx_NotifiesExactlyWhenCrossingUsedEvent()
    {
        // §2.7.7.2: notify when the used idx at which an entry is placed equals used_event, i.e.
        // when used.idx moves from used_event to used_event + 1. The first decision after
        // activation always notifies.
        using var ring = new SplitRing(features: VirtqueueFeatures.EventIndex);
        ring.Activate();
        ring.Driver.WriteUsedEvent(4);

        bool[] notified = [.. Enumerable.Range(0, 8).Select(_ => CompleteOne(ring))];

        // used.idx after each flush: 1 2 3 4 5 6 7 8; crossing used_event 4 happens at 4 -> 5.
        Assert.That(notified, Is.EqualTo(new[] { true, false, false, false, true, false, false, false }));
    }

    [Test]
    public void FlushUsed_WithEventIdx_BatchSpanningUsedEventNotifiesOnce()
    {
        using var ring = new SplitRing(features: VirtqueueFeatures.EventIndex);
        ring.Activate();
        CompleteOne(ring);              // used.idx 1, the always-notify first decision
        ring.Driver.WriteUsedEvent(3);

        bool batchAcross = CompleteBatch(ring, 5);     // 1 -> 6 crosses 3
        ring.Driver.WriteUsedEvent(10);
        bool batchBefore = CompleteBatch(ring, 4);     // 6 -> 10 does not reach "entry 10 written"
        bool batchOnto = CompleteBatch(ring, 1);       // 10 -> 11 writes entry 10

        Assert.That((batchAcross, batchBefore, batchOnto), Is.EqualTo((true, false, true)));
    }

    [Test]
    public void FlushUsed_WithEventIdx_IgnoresNoInterruptFlag()
    {
        using var ring = new SplitRing(features: VirtqueueFeatures.EventIndex);
        ring.Activate();
        ring.Driver.WriteAvailFlags(SplitRingLayout.AvailFlagNoInterrupt);
        ring.Driver.WriteUsedEvent(0);

        Assert.That(CompleteOne(ring), Is.True, "§2.7.7.2: with EVENT_IDX the device MUST ignore bit 0 of avail.flags");
    }

    [Test]
    public void FlushUsed_WithEventIdx_UsedEventAcrossThe16BitWrap()
    {
        using var ring = new SplitRing(size: 8, features: VirtqueueFeatures.EventIndex);
        ring.Driver.StartAt(65533);
        ring.Queue.RestoreState(ring.Memory, new VirtqueueState
        {
            Format = VirtqueueFormat.Split,
            Features = VirtqueueFeatures.EventIndex,
            Ready = true,
            Config = ring.Driver.Config,
            NextAvail = 65533,
            NextUsed = 65533,
        });
        CompleteOne(ring);              // 65533 -> 65534, first decision
        ring.Driver.WriteUsedEvent(1);  // entry 1, after the wrap

        bool[] notified = [.. Enumerable.Range(0, 4).Select(_ => CompleteOne(ring))];   // 65534->65535, ->0, ->1, ->2

        Assert.That(notified, Is.EqualTo(new[] { false, false, false, true }));
    }

    [Test]
    public void DisableNotification_WithoutEventIdx_SetsNoNotifyAndEnableClearsIt()
    {
        using var ring = new SplitRing();
        ring.Activate();

        ring.Queue.DisableNotification();
        ushort disabled = ring.Driver.LoadUsedFlags();
        ring.AddAndPublish(SplitRing.Writable(0, 8));
        bool kickWhileDisabled = ring.Driver.NeedsKick();
        bool moreWork = ring.Queue.EnableNotification();
        ushort enabled = ring.Driver.LoadUsedFlags();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(disabled, Is.EqualTo(SplitRingLayout.UsedFlagNoNotify));
            Assert.That(kickWhileDisabled, Is.False);
            Assert.That(moreWork, Is.True, "a buffer arrived while notifications were off");
            Assert.That(enabled, Is.Zero);
        }
    }

    [Test]
    public void EnableNotification_WithEventIdx_WritesAvailEventAndKeepsFlagsZero()
    {
        using var ring = new SplitRing(features: VirtqueueFeatures.EventIndex);
        ring.Activate();
        ring.AddAndPublish(SplitRing.Writable(0, 8));
        ring.Queue.TryPopChain(out _);

        ring.Queue.DisableNotification();
        bool moreWork = ring.Queue.EnableNotification();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(moreWork, Is.False);
            Assert.That(ring.Driver.LoadAvailEvent(), Is.EqualTo((ushort)1));
            Assert.That(ring.Driver.LoadUsedFlags(), Is.Zero, "§2.7.10.2: used.flags stays 0 with EVENT_IDX");
        }
    }

    [Test]
    public void NeedsKick_WithEventIdx_KicksOnlyForTheEntryTheDeviceAskedFor()
    {
        using var ring = new SplitRing(features: VirtqueueFeatures.EventIndex);
        ring.Activate();
        ring.Queue.EnableNotification();           // avail_event = 0: kick me when entry 0 is written

        ring.AddAndPublish(SplitRing.Writable(0, 8));
        bool first = ring.Driver.NeedsKick();
        ring.AddAndPublish(SplitRing.Writable(8, 8));
        bool second = ring.Driver.NeedsKick();     // the device has not re-armed since
        ring.Queue.TryPopChain(out _);
        ring.Queue.TryPopChain(out _);
        ring.Queue.EnableNotification();           // avail_event = 2
        ring.AddAndPublish(SplitRing.Writable(16, 8));
        bool third = ring.Driver.NeedsKick();

        Assert.That((first, second, third), Is.EqualTo((true, false, true)));
    }

    [Test]
    public void EnableInterrupts_DriverSide_ReportsBuffersUsedMeanwhile()
    {
        using var ring = new SplitRing(features: VirtqueueFeatures.EventIndex);
        ring.Activate();
        ring.Driver.DisableInterrupts();
        ring.AddAndPublish(SplitRing.Writable(0, 8));
        ring.Queue.TryPopChain(out DescriptorChain chain);
        ring.Queue.AddUsed(chain.Token, 8);
        ring.Queue.FlushUsed();

        Assert.That(ring.Driver.EnableInterrupts(), Is.True);
        Assert.That(ring.Driver.TryGetUsed(out _), Is.EqualTo(UsedBufferStatus.Ok));
        Assert.That(ring.Driver.EnableInterrupts(), Is.False);
    }

    private static bool CompleteOne(SplitRing ring) => CompleteBatch(ring, 1);

    private static bool CompleteBatch(SplitRing ring, int count)
    {
        for (int i = 0; i < count; i++)
        {
            ring.AddAndPublish(SplitRing.Writable((ulong)i * 8, 8));
        }

        for (int i = 0; i < count; i++)
        {
            Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
            ring.Queue.AddUsed(chain.Token, 8);
        }

        bool notify = ring.Queue.FlushUsed();
        while (ring.Driver.TryGetUsed(out _) == UsedBufferStatus.Ok)
        {
        }

        return notify;
    }
}
