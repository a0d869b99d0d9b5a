using System.Runtime.CompilerServices;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

// The split-ring rows' work, one method per row, shared by the BenchmarkDotNet class
// (SplitRingBenchmarks, timing) and the NativeAOT instruction-count driver
// (bench/VirtioPanic.RingInstructions), so both measure the same code. Public API only: the
// driver has no access to the engine's internals. Each method is one benchmark operation batch
// (its chain count is in ChainsPerRound) and returns the bytes walked, checked by SelfCheck.
internal sealed class SplitRingRows : IDisposable
{
    private readonly SplitRingFixture _one = new(ChainShape.OneDescriptor);
    private readonly SplitRingFixture _three = new(ChainShape.ThreeDescriptors);
    private readonly SplitRingFixture _indirect = new(ChainShape.IndirectOfThree);
    private readonly SplitRingFixture _perChain = new(ChainShape.OneDescriptor);
    private readonly SplitRingFixture _floor = new(ChainShape.OneDescriptor);
    private readonly SplitRingFixture _publishOnly = new(ChainShape.ThreeDescriptors);
    private readonly SplitRingFixture _popOne = new(ChainShape.OneDescriptor);
    private readonly SplitRingFixture _perChainPop = new(ChainShape.OneDescriptor);
    private readonly SplitRingFixture _perChainSeparate = new(ChainShape.OneDescriptor);
    private readonly SplitRingFixture _nearOne = new(ChainShape.OneDescriptor);
    private readonly SplitRingFixture _nearPerChain = new(ChainShape.OneDescriptor);
    private readonly SplitRingFixture _nearThree = new(ChainShape.ThreeDescriptors);
    private readonly Virtqueue _oneQueue;
    private readonly Virtqueue _threeQueue;
    private readonly Virtqueue _indirectQueue;
    private readonly Virtqueue _perChainQueue;
    private readonly Virtqueue _popOneQueue;
    private readonly Virtqueue _perChainPopQueue;
    private readonly Virtqueue _perChainSeparateQueue;
    private RawSplitRing _raw;
    private NearLimitSplitRing _nearOneRing;
    private NearLimitSplitRing _nearPerChainRing;
    private NearLimitSplitRing _nearThreeRing;
    private long _interrupts;

    internal SplitRingRows()
    {
        _oneQueue = Activate(_one);
        _threeQueue = Activate(_three);
        _indirectQueue = Activate(_indirect);
        _perChainQueue = Activate(_perChain);
        _popOneQueue = Activate(_popOne);
        _perChainPopQueue = Activate(_perChainPop);
        _perChainSeparateQueue = Activate(_perChainSeparate);
        _raw = new RawSplitRing(_floor.Memory, _floor.Driver.Config);
        _nearOneRing = new NearLimitSplitRing(_nearOne.Memory, _nearOne.Driver.Config);
        _nearPerChainRing = new NearLimitSplitRing(_nearPerChain.Memory, _nearPerChain.Driver.Config);
        _nearThreeRing = new NearLimitSplitRing(_nearThree.Memory, _nearThree.Driver.Config);
    }

    internal long Interrupts => _interrupts;

    // Every row really moves every chain through the ring (bytes walked per round).
    internal void SelfCheck()
    {
        const uint Three = 16 + 48 + 64;
        Expect(OneDescriptor_FullRingBatch(), 256 * 64);
        Expect(OneDescriptor_FullRingBatch_TryPopChain(), 256 * 64);
        Expect(OneDescriptor_NotifyPerChain(), 256 * 64);
        Expect(OneDescriptor_NotifyPerChain_TryPopChain(), 256 * 64);
        Expect(OneDescriptor_NotifyPerChain_SeparateCalls(), 256 * 64);
        Expect(ThreeDescriptors_Batch85(), 85 * Three);
        Expect(IndirectOfThree_FullRingBatch(), 256 * Three);
        Expect(NearLimit_OneDescriptor_FullRingBatch(), 256 * 64);
        Expect(NearLimit_OneDescriptor_NotifyPerChain(), 256 * 64);
        Expect(NearLimit_ThreeDescriptors_Batch85(), 85 * Three);
        if (_nearOneRing.Failed || _nearPerChainRing.Failed || _nearThreeRing.Failed)
        {
            throw new InvalidOperationException("the near-limit reference refused the benchmark ring");
        }
    }

    internal static void Expect(uint actual, uint expected)
    {
        if (actual != expected)
        {
            throw new InvalidOperationException($"benchmark self-check failed: {actual} bytes walked, {expected} expected");
        }
    }

    internal uint OneDescriptor_FullRingBatch()
    {
        _one.PublishBatch(SplitRingFixture.Size);
        return DrainBatch(_oneQueue);
    }

    internal uint OneDescriptor_FullRingBatch_TryPopChain()
    {
        _popOne.PublishBatch(SplitRingFixture.Size);
        return PopEach(_popOneQueue);
    }

    // One round per chain, ended by EndRound (flush, re-arm and re-check in one call).
    internal uint OneDescriptor_NotifyPerChain()
    {
        uint total = 0;
        for (int i = 0; i < SplitRingFixture.Size; i++)
        {
            _perChain.PublishBatch(1);
            total += Round(_perChainQueue);
        }

        return total;
    }

    // The same round ended by FlushUsed and EnableNotification, two calls and two fences.
    internal uint OneDescriptor_NotifyPerChain_SeparateCalls()
    {
        uint total = 0;
        for (int i = 0; i < SplitRingFixture.Size; i++)
        {
            _perChainSeparate.PublishBatch(1);
            total += DrainBatch(_perChainSeparateQueue);
        }

        return total;
    }

    internal uint OneDescriptor_NotifyPerChain_TryPopChain()
    {
        uint total = 0;
        for (int i = 0; i < SplitRingFixture.Size; i++)
        {
            _perChainPop.PublishBatch(1);
            total += PopEach(_perChainPopQueue);
        }

        return total;
    }

    internal uint ThreeDescriptors_Batch85()
    {
        _three.PublishBatch(85);
        return DrainBatch(_threeQueue);
    }

    internal uint IndirectOfThree_FullRingBatch()
    {
        _indirect.PublishBatch(SplitRingFixture.Size);
        return DrainBatch(_indirectQueue);
    }

    internal uint MemoryFloor_OneDescriptor()
    {
        _floor.PublishBatch(SplitRingFixture.Size);
        return _raw.Drain();
    }

    internal ushort DriverPublish_ThreeDescriptors_Batch85()
    {
        // Nobody consumes this ring: only the driver's stores are measured.
        _publishOnly.PublishBatch(85);
        return _publishOnly.AvailIndex;
    }

    internal uint NearLimit_OneDescriptor_FullRingBatch()
    {
        _nearOne.PublishBatch(SplitRingFixture.Size);
        return _nearOneRing.Round(ref _interrupts);
    }

    internal uint NearLimit_OneDescriptor_NotifyPerChain()
    {
        uint total = 0;
        for (int i = 0; i < SplitRingFixture.Size; i++)
        {
            _nearPerChain.PublishBatch(1);
            total += _nearPerChainRing.Round(ref _interrupts);
        }

        return total;
    }

    internal uint NearLimit_ThreeDescriptors_Batch85()
    {
        _nearThree.PublishBatch(85);
        return _nearThreeRing.Round(ref _interrupts);
    }

    public void Dispose()
    {
        _one.Dispose();
        _three.Dispose();
        _indirect.Dispose();
        _perChain.Dispose();
        _floor.Dispose();
        _publishOnly.Dispose();
        _popOne.Dispose();
        _perChainPop.Dispose();
        _perChainSeparate.Dispose();
        _nearOne.Dispose();
        _nearPerChain.Dispose();
        _nearThree.Dispose();
    }

    internal static Virtqueue Activate(SplitRingFixture fixture)
    {
        var queue = new Virtqueue(SplitRingFixture.Size);
        VirtqueueStatus status = queue.Activate(fixture.Memory, fixture.Driver.Config, fixture.Features);
        if (status != VirtqueueStatus.Ok)
        {
            throw new InvalidOperationException($"benchmark ring did not activate: {status}");
        }

        return queue;
    }

    // Out of line, as the reference's round is: in one loop with the fixture's driver stores the
    // JIT's fully inlined round ran 30-40 ns against 19 ns as a call (Tier-1, the same code), a
    // cost of the driver and the device sharing a thread, which a real ring does not have.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private uint DrainBatch(Virtqueue queue)
    {
        var handler = default(WalkHandler);
        queue.DisableNotification();
        queue.ProcessChains(ref handler, SplitRingFixture.Size, out _);
        if (queue.FlushUsed())
        {
            _interrupts++;
        }

        queue.EnableNotification();
        return handler.Total;
    }

    // Out of line, as the reference's round is: in one loop with the fixture's driver stores the
    // JIT's fully inlined round ran 30-40 ns against 19 ns as a call (Tier-1, the same code), a
    // cost of the driver and the device sharing a thread, which a real ring does not have.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private uint Round(Virtqueue queue)
    {
        var handler = default(WalkHandler);
        queue.DisableNotification();
        queue.ProcessChains(ref handler, SplitRingFixture.Size, out _);
        if (queue.EndRound(out bool notify) || notify)
        {
            _interrupts++;
        }

        return handler.Total;
    }

    // Out of line, as the reference's round is: in one loop with the fixture's driver stores the
    // JIT's fully inlined round ran 30-40 ns against 19 ns as a call (Tier-1, the same code), a
    // cost of the driver and the device sharing a thread, which a real ring does not have.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private uint PopEach(Virtqueue queue)
    {
        uint total = 0;
        queue.DisableNotification();
        while (queue.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok)
        {
            foreach (GuestMemorySlice buffer in chain.Buffers)
            {
                total += buffer.Length;
            }

            queue.AddUsed(chain.Token, 0);
        }

        if (queue.FlushUsed())
        {
            _interrupts++;
        }

        queue.EnableNotification();
        return total;
    }
}
