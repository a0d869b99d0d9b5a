using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

// The packed-ring rows' work, shared by PackedRingBenchmarks (timing) and the NativeAOT
// instruction-count driver, like SplitRingRows. "Device" rows include the driver re-posting the
// batch (a packed driver must rewrite each used slot); the PublishOnly rows measure that share
// alone, so the device's share = Device row − PublishOnly row.
internal sealed class PackedRingRows : IDisposable
{
    private readonly PackedRingFixture _one = new(ChainShape.OneDescriptor);
    private readonly PackedRingFixture _perChain = new(ChainShape.OneDescriptor);
    private readonly PackedRingFixture _three = new(ChainShape.ThreeDescriptors);
    private readonly PackedRingFixture _indirect = new(ChainShape.IndirectOfThree);
    private readonly PackedRingFixture _publishOne = new(ChainShape.OneDescriptor);
    private readonly PackedRingFixture _publishThree = new(ChainShape.ThreeDescriptors);
    private readonly Virtqueue _oneQueue;
    private readonly Virtqueue _perChainQueue;
    private readonly Virtqueue _threeQueue;
    private readonly Virtqueue _indirectQueue;
    private long _interrupts;

    internal PackedRingRows()
    {
        _oneQueue = Activate(_one);
        _perChainQueue = Activate(_perChain);
        _threeQueue = Activate(_three);
        _indirectQueue = Activate(_indirect);
    }

    internal long Interrupts => _interrupts;

    internal void SelfCheck()
    {
        SplitRingRows.Expect(Packed_OneDescriptor_FullRingBatch(), 256 * 64);
        SplitRingRows.Expect(Packed_OneDescriptor_NotifyPerChain(), 256 * 64);
        SplitRingRows.Expect(Packed_ThreeDescriptors_Batch85(), 85 * (16 + 48 + 64));
        SplitRingRows.Expect(Packed_IndirectOfThree_FullRingBatch(), 256 * (16 + 48 + 64));
    }

    internal uint Packed_OneDescriptor_FullRingBatch()
    {
        _one.PublishBatch(PackedRingFixture.Size);
        return Drain(_oneQueue);
    }

    internal int Packed_PublishOnly_OneDescriptor_FullRingBatch()
    {
        _publishOne.PublishBatch(PackedRingFixture.Size);
        return PackedRingFixture.Size;
    }

    internal uint Packed_OneDescriptor_NotifyPerChain()
    {
        uint total = 0;
        for (int i = 0; i < PackedRingFixture.Size; i++)
        {
            _perChain.PublishBatch(1);
            total += Drain(_perChainQueue);
        }

        return total;
    }

    internal uint Packed_ThreeDescriptors_Batch85()
    {
        _three.PublishBatch(85);
        return Drain(_threeQueue);
    }

    internal int Packed_PublishOnly_ThreeDescriptors_Batch85()
    {
        _publishThree.PublishBatch(85);
        return 85;
    }

    internal uint Packed_IndirectOfThree_FullRingBatch()
    {
        _indirect.PublishBatch(PackedRingFixture.Size);
        return Drain(_indirectQueue);
    }

    public void Dispose()
    {
        _one.Dispose();
        _perChain.Dispose();
        _three.Dispose();
        _indirect.Dispose();
        _publishOne.Dispose();
        _publishThree.Dispose();
    }

    private static Virtqueue Activate(PackedRingFixture fixture)
    {
        var queue = new Virtqueue(PackedRingFixture.Size);
        VirtqueueStatus status = queue.Activate(fixture.Memory, fixture.Driver.Config, fixture.Features);
        if (status != VirtqueueStatus.Ok)
        {
            throw new InvalidOperationException($"benchmark ring did not activate: {status}");
        }

        return queue;
    }

    private uint Drain(Virtqueue queue)
    {
        var handler = default(WalkHandler);
        queue.DisableNotification();
        queue.ProcessChains(ref handler, PackedRingFixture.Size, out _);
        if (queue.FlushUsed())
        {
            _interrupts++;
        }

        queue.EnableNotification();
        return handler.Total;
    }
}
