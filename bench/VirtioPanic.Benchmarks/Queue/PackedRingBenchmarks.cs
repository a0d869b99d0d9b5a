using BenchmarkDotNet.Attributes;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

/// <summary>
/// The split ring's rows for the packed ring (VIRTIO_F_RING_PACKED), through the same
/// format-neutral <see cref="Virtqueue"/>. "Device" rows include re-posting the batch, because a
/// packed driver must rewrite each used slot; "PublishOnly" rows measure that driver share alone,
/// so device cost = Device row − PublishOnly row.
/// </summary>
[MemoryDiagnoser]
public class PackedRingBenchmarks
{
    private PackedRingFixture _one = null!;
    private PackedRingFixture _perChain = null!;
    private PackedRingFixture _three = null!;
    private PackedRingFixture _indirect = null!;
    private PackedRingFixture _publishOne = null!;
    private PackedRingFixture _publishThree = null!;
    private Virtqueue _oneQueue = null!;
    private Virtqueue _perChainQueue = null!;
    private Virtqueue _threeQueue = null!;
    private Virtqueue _indirectQueue = null!;
    private long _interrupts;

    [GlobalSetup]
    public void Setup()
    {
        _one = new PackedRingFixture(ChainShape.OneDescriptor);
        _perChain = new PackedRingFixture(ChainShape.OneDescriptor);
        _three = new PackedRingFixture(ChainShape.ThreeDescriptors);
        _indirect = new PackedRingFixture(ChainShape.IndirectOfThree);
        _publishOne = new PackedRingFixture(ChainShape.OneDescriptor);
        _publishThree = new PackedRingFixture(ChainShape.ThreeDescriptors);
        _oneQueue = Activate(_one);
        _perChainQueue = Activate(_perChain);
        _threeQueue = Activate(_three);
        _indirectQueue = Activate(_indirect);

        // Self-check: each benchmark really moves every chain through the ring.
        Expect(Packed_OneDescriptor_FullRingBatch(), 256 * 64);
        Expect(Packed_OneDescriptor_NotifyPerChain(), 256 * 64);
        Expect(Packed_ThreeDescriptors_Batch85(), 85 * (16 + 48 + 64));
        Expect(Packed_IndirectOfThree_FullRingBatch(), 256 * (16 + 48 + 64));
    }

    internal static void Expect(uint actual, uint expected)
    {
        if (actual != expected)
        {
            throw new InvalidOperationException($"benchmark self-check failed: {actual} bytes walked, {expected} expected");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _one.Dispose();
        _perChain.Dispose();
        _three.Dispose();
        _indirect.Dispose();
        _publishOne.Dispose();
        _publishThree.Dispose();
    }

    [Benchmark(OperationsPerInvoke = PackedRingFixture.Size)]
    public uint Packed_OneDescriptor_FullRingBatch()
    {
        _one.PublishBatch(PackedRingFixture.Size);
        return Drain(_oneQueue);
    }

    [Benchmark(OperationsPerInvoke = PackedRingFixture.Size)]
    public int Packed_PublishOnly_OneDescriptor_FullRingBatch()
    {
        _publishOne.PublishBatch(PackedRingFixture.Size);
        return PackedRingFixture.Size;
    }

    [Benchmark(OperationsPerInvoke = PackedRingFixture.Size)]
    public uint Packed_OneDescriptor_NotifyPerChain()
    {
        uint total = 0;
        for (int i = 0; i < PackedRingFixture.Size; i++)
        {
            _perChain.PublishBatch(1);
            total += Drain(_perChainQueue);
        }

        return total;
    }

    [Benchmark(OperationsPerInvoke = 85)]
    public uint Packed_ThreeDescriptors_Batch85()
    {
        _three.PublishBatch(85);
        return Drain(_threeQueue);
    }

    [Benchmark(OperationsPerInvoke = 85)]
    public int Packed_PublishOnly_ThreeDescriptors_Batch85()
    {
        _publishThree.PublishBatch(85);
        return 85;
    }

    [Benchmark(OperationsPerInvoke = PackedRingFixture.Size)]
    public uint Packed_IndirectOfThree_FullRingBatch()
    {
        _indirect.PublishBatch(PackedRingFixture.Size);
        return Drain(_indirectQueue);
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
}
