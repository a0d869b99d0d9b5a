using BenchmarkDotNet.Attributes;

namespace VirtioPanic.Benchmarks.Queue;

/// <summary>
/// The split ring's rows for the packed ring (VIRTIO_F_RING_PACKED), through the same
/// format-neutral <c>Virtqueue</c>. "Device" rows include re-posting the batch, because a
/// packed driver must rewrite each used slot; "PublishOnly" rows measure that driver share alone,
/// so device cost = Device row − PublishOnly row.
/// </summary>
[MemoryDiagnoser]
public class PackedRingBenchmarks
{
    private PackedRingRows _rows = null!;

    [GlobalSetup]
    public void Setup()
    {
        _rows = new PackedRingRows();
        _rows.SelfCheck();
    }

    [GlobalCleanup]
    public void Cleanup() => _rows.Dispose();

    [Benchmark(OperationsPerInvoke = PackedRingFixture.Size)]
    public uint Packed_OneDescriptor_FullRingBatch() => _rows.Packed_OneDescriptor_FullRingBatch();

    [Benchmark(OperationsPerInvoke = PackedRingFixture.Size)]
    public int Packed_PublishOnly_OneDescriptor_FullRingBatch() => _rows.Packed_PublishOnly_OneDescriptor_FullRingBatch();

    [Benchmark(OperationsPerInvoke = PackedRingFixture.Size)]
    public uint Packed_OneDescriptor_NotifyPerChain() => _rows.Packed_OneDescriptor_NotifyPerChain();

    [Benchmark(OperationsPerInvoke = 85)]
    public uint Packed_ThreeDescriptors_Batch85() => _rows.Packed_ThreeDescriptors_Batch85();

    [Benchmark(OperationsPerInvoke = 85)]
    public int Packed_PublishOnly_ThreeDescriptors_Batch85() => _rows.Packed_PublishOnly_ThreeDescriptors_Batch85();

    [Benchmark(OperationsPerInvoke = PackedRingFixture.Size)]
    public uint Packed_IndirectOfThree_FullRingBatch() => _rows.Packed_IndirectOfThree_FullRingBatch();
}
