using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// Save and restore for snapshot and migration; restored state is validated like guest input.
public sealed class SplitVirtqueueStateTests
{
    [Test]
    public void RestoreState_MidStream_ContinuesWithNothingLostOrDuplicated()
    {
        using var ring = new SplitRing(size: 16, features: VirtqueueFeatures.EventIndex);
        ring.Activate();
        for (int i = 0; i < 6; i++)
        {
            ring.AddAndPublish(SplitRing.Writable((ulong)i * 8, 8));
        }

        // Pop 4, complete 2, keep 2 in flight (the device saves their tokens itself).
        var inFlight = new List<ChainToken>();
        for (int i = 0; i < 4; i++)
        {
            ring.Queue.TryPopChain(out DescriptorChain chain);
            if (i < 2)
            {
                ring.Queue.AddUsed(chain.Token, 8);
            }
            else
            {
                inFlight.Add(chain.Token);
            }
        }

        VirtqueueState saved = ring.Queue.SaveState();    // publishes the two pending used entries
        var restored = new Virtqueue(16);
        Assert.That(restored.RestoreState(ring.Memory, saved), Is.EqualTo(VirtqueueStatus.Ok));

        foreach (ChainToken token in inFlight)
        {
            Assert.That(restored.AddUsed(token, 8), Is.EqualTo(VirtqueueStatus.Ok));
        }

        while (restored.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok)
        {
            restored.AddUsed(chain.Token, 8);
        }

        restored.FlushUsed();
        var ids = new List<ushort>();
        while (ring.Driver.TryGetUsed(out UsedBuffer used) == UsedBufferStatus.Ok)
        {
            ids.Add(used.Id);
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(saved.NextAvail, Is.EqualTo((ushort)4));
            Assert.That(saved.NextUsed, Is.EqualTo((ushort)2));
            Assert.That(ids, Has.Count.EqualTo(6));
            Assert.That(ids, Is.Unique);
            Assert.That(ring.Driver.InFlightCount, Is.Zero);
        }
    }

    [Test]
    public void RestoreState_MoreInFlightThanSize_ReturnsInvalidState()
    {
        using var ring = new SplitRing(size: 16);
        var queue = new Virtqueue(16);

        VirtqueueStatus status = queue.RestoreState(ring.Memory, new VirtqueueState
        {
            Format = VirtqueueFormat.Split,
            Ready = true,
            Config = ring.Driver.Config,
            NextAvail = 40,
            NextUsed = 2,
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status, Is.EqualTo(VirtqueueStatus.InvalidState));
            Assert.That(queue.IsReady, Is.False);
        }
    }

    [Test]
    public void RestoreState_BadConfig_IsRejectedLikeActivation()
    {
        using var ring = new SplitRing(size: 16);
        var queue = new Virtqueue(16);

        VirtqueueStatus status = queue.RestoreState(ring.Memory, new VirtqueueState
        {
            Format = VirtqueueFormat.Split,
            Ready = true,
            Config = ring.Driver.Config with { DeviceArea = ring.Driver.Config.DeviceArea + 1 },
        });

        Assert.That(status, Is.EqualTo(VirtqueueStatus.MisalignedDeviceArea));
    }

    // The ring view (Memory/SplitRingView) is validated once per activation: restoring an active
    // queue onto a configuration whose used ring runs past guest memory must be refused and leave
    // no view of the old areas behind (a batch then reports NotReady, it does not use them).
    [Test]
    public void RestoreState_ActiveQueueOntoAreaPastMemory_IsRefusedAndLeavesNoRingView()
    {
        using var ring = new SplitRing(size: 16, features: VirtqueueFeatures.EventIndex);
        ring.Activate();
        ring.AddAndPublish(SplitRing.Writable(0, 8));
        VirtqueueState saved = ring.Queue.SaveState();

        VirtqueueStatus status = ring.Queue.RestoreState(ring.Memory, saved with
        {
            Config = saved.Config with { DeviceArea = SplitRing.MemorySize - 64 },
        });
        var handler = default(CountingHandler);
        VirtqueueStatus batch = ring.Queue.ProcessChains(ref handler, 16, out int processed);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status, Is.EqualTo(VirtqueueStatus.DeviceAreaOutOfRange));
            Assert.That(ring.Queue.IsReady, Is.False);
            Assert.That(batch, Is.EqualTo(VirtqueueStatus.NotReady));
            Assert.That(processed, Is.Zero);
            Assert.That(handler.Calls, Is.Zero);
        }
    }

    private struct CountingHandler : IDescriptorChainHandler
    {
        internal int Calls;

        public bool Handle(scoped in DescriptorChain chain, out uint writtenLength)
        {
            Calls++;
            writtenLength = 0;
            return true;
        }
    }

    [Test]
    public void RestoreState_NotReady_LeavesQueueInactive()
    {
        using var ring = new SplitRing(size: 16);
        var queue = new Virtqueue(16);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(queue.RestoreState(ring.Memory, default), Is.EqualTo(VirtqueueStatus.Ok));
            Assert.That(queue.IsReady, Is.False);
        }
    }

    [Test]
    public void SaveState_RoundTripsConfigAndFeatures()
    {
        using var ring = new SplitRing(size: 16, features: VirtqueueFeatures.EventIndex | VirtqueueFeatures.IndirectDescriptors);
        ring.Activate();

        VirtqueueState state = ring.Queue.SaveState();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(state.Ready, Is.True);
            Assert.That(state.Config, Is.EqualTo(ring.Driver.Config));
            Assert.That(state.Features, Is.EqualTo(VirtqueueFeatures.EventIndex | VirtqueueFeatures.IndirectDescriptors));
            Assert.That(state.Format, Is.EqualTo(VirtqueueFormat.Split));
        }
    }
}
