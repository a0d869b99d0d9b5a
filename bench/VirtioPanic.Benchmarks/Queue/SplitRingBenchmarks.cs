using BenchmarkDotNet.Attributes;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

/// <summary>
/// Device-side cost per chain of the split ring engine: pop (with every validation), walk every
/// descriptor, add used, and the notification decision, in the rust-vmm virtio-queue 0.7.1 peer's
/// scenario (queue 256, EVENT_IDX, 16 MiB). Each benchmark processes one batch and reports time
/// per chain (OperationsPerInvoke). The <c>NearLimit_*</c> rows are the reference every engine row
/// is divided by (<see cref="NearLimitSplitRing"/>), measured in the same run.
/// </summary>
[MemoryDiagnoser]
public class SplitRingBenchmarks
{
    private SplitRingRows _rows = null!;
    private SplitRingFixture _direct = null!;
    private SplitVirtqueue _directQueue = null!;
    private long _interrupts;

    [GlobalSetup]
    public void Setup()
    {
        _rows = new SplitRingRows();
        _direct = new SplitRingFixture(ChainShape.OneDescriptor);
        _directQueue = new SplitVirtqueue(SplitRingFixture.Size, SplitRingFixture.Size);
        VirtqueueStatus status = _directQueue.Activate(_direct.Memory, _direct.Driver.Config, _direct.Features);
        if (status != VirtqueueStatus.Ok)
        {
            throw new InvalidOperationException($"benchmark ring did not activate: {status}");
        }

        _rows.SelfCheck();
        SplitRingRows.Expect(OneDescriptor_FullRingBatch_SplitVirtqueueDirect(), 256 * 64);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _rows.Dispose();
        _direct.Dispose();
    }

    /// <summary>1-descriptor chains, full-ring batches of 256.</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint OneDescriptor_FullRingBatch() => _rows.OneDescriptor_FullRingBatch();

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
    public uint OneDescriptor_FullRingBatch_TryPopChain() => _rows.OneDescriptor_FullRingBatch_TryPopChain();

    /// <summary>1-descriptor chains, one notification round per chain, ended by EndRound.</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint OneDescriptor_NotifyPerChain() => _rows.OneDescriptor_NotifyPerChain();

    /// <summary>The same round ended by FlushUsed and EnableNotification (two calls, two fences).</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint OneDescriptor_NotifyPerChain_SeparateCalls() => _rows.OneDescriptor_NotifyPerChain_SeparateCalls();

    /// <summary>The per-chain round with the one-chain API (TryPopChain + AddUsed), what a device woken for every chain would call.</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint OneDescriptor_NotifyPerChain_TryPopChain() => _rows.OneDescriptor_NotifyPerChain_TryPopChain();

    /// <summary>3-descriptor chains (R,R,W), batches of 85.</summary>
    [Benchmark(OperationsPerInvoke = 85)]
    public uint ThreeDescriptors_Batch85() => _rows.ThreeDescriptors_Batch85();

    /// <summary>1 ring descriptor pointing at an indirect table of 3, full-ring batches.</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint IndirectOfThree_FullRingBatch() => _rows.IndirectOfThree_FullRingBatch();

    /// <summary>The memory-traffic floor: the same loads and stores as OneDescriptor_FullRingBatch with no validation at all.</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint MemoryFloor_OneDescriptor() => _rows.MemoryFloor_OneDescriptor();

    /// <summary>The driver's share in the 3-descriptor case (85 avail entries, used_event, avail.idx), reported separately.</summary>
    [Benchmark(OperationsPerInvoke = 85)]
    public ushort DriverPublish_ThreeDescriptors_Batch85() => _rows.DriverPublish_ThreeDescriptors_Batch85();

    /// <summary>Reference for OneDescriptor_FullRingBatch: the same checks on raw pointers, no chain view.</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint NearLimit_OneDescriptor_FullRingBatch() => _rows.NearLimit_OneDescriptor_FullRingBatch();

    /// <summary>Reference for OneDescriptor_NotifyPerChain.</summary>
    [Benchmark(OperationsPerInvoke = SplitRingFixture.Size)]
    public uint NearLimit_OneDescriptor_NotifyPerChain() => _rows.NearLimit_OneDescriptor_NotifyPerChain();

    /// <summary>Reference for ThreeDescriptors_Batch85.</summary>
    [Benchmark(OperationsPerInvoke = 85)]
    public uint NearLimit_ThreeDescriptors_Batch85() => _rows.NearLimit_ThreeDescriptors_Batch85();
}
