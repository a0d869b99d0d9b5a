using BenchmarkDotNet.Attributes;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

/// <summary>
/// Device-side cost per chain of the split ring engine: pop (with every validation), walk every
/// descriptor, add used, and the notification decision, in the rust-vmm virtio-queue 0.7.1 peer's
/// scenario (queue 256, EVENT_IDX, 16 MiB). Each benchmark processes one batch and reports time
/// per chain (OperationsPerInvoke).
/// </summary>
[MemoryDiagnoser]
public class SplitRingBenchmarks
{
    private SplitRingFixture _one = null!;
    private SplitRingFixture _three = null!;
    private SplitRingFixture _indirect = null!;
    private SplitRingFixture _perChain = null!;
    private SplitRingFixture _direct = null!;
    private SplitRingFixture _floor = null!;
    private SplitRingFixture _publishOnly = null!;
    private SplitRingFixture _popOne = null!;
    private SplitRingFixture _perChainPop = null!;
    private Virtqueue _perChainPopQueue = null!;
    private Virtqueue _popOneQueue = null!;
    private Virtqueue _oneQueue = null!;
    private Virtqueue _threeQueue = null!;
    private Virtqueue _indirectQueue = null!;
    private Virtqueue _perChainQueue = null!;
    private SplitVirtqueue _directQueue = null!;
    private RawSplitRing _raw;
    private long _interrupts;

    [GlobalSetup]
    public void Setup()
    {
        _one = new SplitRingFixture(ChainShape.OneDescriptor);
        _three = new SplitRingFixture(ChainShape.ThreeDescriptors);
        _indirect = new SplitRingFixture(ChainShape.IndirectOfThree);
        _perChain = new SplitRingFixture(ChainShape.OneDescriptor);
        _direct = new SplitRingFixture(ChainShape.OneDescriptor);
        _floor = new SplitRingFixture(ChainShape.OneDescriptor);
        _publishOnly = new SplitRingFixture(ChainShape.ThreeDescriptors);
        _popOne = new SplitRingFixture(ChainShape.OneDescriptor);
        _popOneQueue = Activate(_popOne);
        _perChainPop = new SplitRingFixture(ChainShape.OneDescriptor);
        _perChainPopQueue = Activate(_perChainPop);
        _oneQueue = Activate(_one);
        _threeQueue = Activate(_three);
        _indirectQueue = Activate(_indirect);
        _perChainQueue = Activate(_perChain);
        _directQueue = new SplitVirtqueue(SplitRingFixture.Size, SplitRingFixture.Size);
        Check(_directQueue.Activate(_direct.Memory, _direct.Driver.Config, _direct.Features));
        _raw = new RawSplitRing(_floor.Memory, _floor.Driver.Config);

        // Self-check: each benchmark really moves every chain through the ring.
        PackedRingBenchmarks.Expect(OneDescriptor_FullRingBatch(), 256 * 64);
        PackedRingBenchmarks.Expect(OneDescriptor_FullRingBatch_SplitVirtqueueDirect(), 256 * 64);
        PackedRingBenchmarks.Expect(OneDescriptor_FullRingBatch_TryPopChain(), 256 * 64);
        PackedRingBenchmarks.Expect(OneDescriptor_NotifyPerChain(), 256 * 64);
        PackedRingBenchmarks.Expect(OneDescriptor_NotifyPerChain_TryPopChain(), 256 * 64);
        PackedRingBenchmarks.Expect(ThreeDescriptors_Batch85(), 85 * (16 + 48 + 64));
        PackedRingBenchmarks.Expect(IndirectOfThree_FullRingBatch(), 256 * (16 + 48 + 64));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _one.Dispose();
        _three.Dispose();
        _indirect.Dispose();
        _perChain.Dispose();
        _direct.Dispose();
        _floor.Dispose();
        _publishOnly.Dispose();
        _popOne.Dispose();
        _perChainPop.Dispose();
    }

    /// <summary>1-descriptor chains, full-ring batches of 256 (target ≤ 4 ns/chain; peer 20.8 ns).</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint OneDescriptor_FullRingBatch()
    {
        _one.PublishBatch(SplitRingFixture.Size);
        return DrainBatch(_oneQueue);
    }

    /// <summary>The same through the internal SplitVirtqueue, without the format-neutral Virtqueue wrapper (abstraction cost).</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint OneDescriptor_FullRingBatch_SplitVirtqueueDirect()
    {
        _direct.PublishBatch(SplitRingFixture.Size);
        var handler = default(WalkHandler);
        _directQueue.DisableNotification();
        _directQueue.ProcessChains(ref handler, SplitRingFixture.Size, out _);
        if (_directQueue.FlushUsed())
        {
            _interrupts++;
        }

        _directQueue.EnableNotification();
        return handler.Total;
    }

    /// <summary>The same with the one-chain-at-a-time API (TryPopChain + AddUsed) instead of ProcessChains.</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint OneDescriptor_FullRingBatch_TryPopChain()
    {
        _popOne.PublishBatch(SplitRingFixture.Size);
        return PopEach(_popOneQueue);
    }

    /// <summary>1-descriptor chains, one notification round per chain (target ≤ 10 ns; peer 29.9 ns).</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint OneDescriptor_NotifyPerChain()
    {
        uint total = 0;
        for (int i = 0; i < SplitRingFixture.Size; i++)
        {
            _perChain.PublishBatch(1);
            total += DrainBatch(_perChainQueue);
        }

        return total;
    }

    /// <summary>
    /// The per-chain round with the one-chain API (TryPopChain + AddUsed), which is what a device
    /// woken for every chain would call: it inlines into the caller, so a round costs no batch setup.
    /// </summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint OneDescriptor_NotifyPerChain_TryPopChain()
    {
        uint total = 0;
        for (int i = 0; i < SplitRingFixture.Size; i++)
        {
            _perChainPop.PublishBatch(1);
            total += PopEach(_perChainPopQueue);
        }

        return total;
    }

    /// <summary>3-descriptor chains (R,R,W), batches of 85 (target ≤ 9 ns/chain; peer 40.7 ns).</summary>
    [Benchmark(OperationsPerInvoke = 85)]
    public uint ThreeDescriptors_Batch85()
    {
        _three.PublishBatch(85);
        return DrainBatch(_threeQueue);
    }

    /// <summary>1 ring descriptor pointing at an indirect table of 3, full-ring batches (target ≤ 12 ns; peer 48.4 ns).</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint IndirectOfThree_FullRingBatch()
    {
        _indirect.PublishBatch(SplitRingFixture.Size);
        return DrainBatch(_indirectQueue);
    }

    /// <summary>The memory-traffic floor: the same loads and stores as OneDescriptor_FullRingBatch with no validation at all.</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint MemoryFloor_OneDescriptor()
    {
        _floor.PublishBatch(SplitRingFixture.Size);
        return _raw.Drain();
    }

    /// <summary>The driver's share in the 3-descriptor case (85 avail entries, used_event, avail.idx), reported separately.</summary>
    [Benchmark(OperationsPerInvoke = 85)]
    public ushort DriverPublish_ThreeDescriptors_Batch85()
    {
        // Nobody consumes this ring: only the driver's stores are measured.
        _publishOnly.PublishBatch(85);
        return _publishOnly.AvailIndex;
    }

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

    private static Virtqueue Activate(SplitRingFixture fixture)
    {
        var queue = new Virtqueue(SplitRingFixture.Size);
        Check(queue.Activate(fixture.Memory, fixture.Driver.Config, fixture.Features));
        return queue;
    }

    private static void Check(VirtqueueStatus status)
    {
        if (status != VirtqueueStatus.Ok)
        {
            throw new InvalidOperationException($"benchmark ring did not activate: {status}");
        }
    }
}
