using BenchmarkDotNet.Attributes;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

/// <summary>
/// Sustained driver → device throughput with the driver on its own thread (target ≥ 100 M
/// chains/s). The driver thread keeps the ring full: it re-publishes each chain as soon as the
/// device has used it (it only moves avail.idx, the descriptors are prepared once). The device
/// runs on the benchmark thread, polling, with the full engine path per chain.
/// </summary>
[MemoryDiagnoser]
public class SplitRingCrossThreadBenchmarks
{
    // Small enough that a quick CI run (a thousand invocations) stays well under a second per iteration.
    private const int ChainsPerInvoke = 1 << 14;

    private SplitRingFixture _fixture = null!;
    private Virtqueue _queue = null!;
    private GuestMemorySlice _avail;
    private GuestMemorySlice _used;
    private Thread _driver = null!;
    private long _limit;       // total chains the driver may publish (written by the benchmark thread)
    private volatile bool _stop;
    private long _processed;

    [GlobalSetup]
    public void Setup()
    {
        _fixture = new SplitRingFixture(ChainShape.OneDescriptor);
        _queue = new Virtqueue(SplitRingFixture.Size);
        if (_queue.Activate(_fixture.Memory, _fixture.Driver.Config, _fixture.Features) != VirtqueueStatus.Ok)
        {
            throw new InvalidOperationException("ring did not activate");
        }

        _fixture.Memory.TryGetSlice(_fixture.Driver.Config.DriverArea, SplitRingLayout.AvailRingSize(SplitRingFixture.Size), out _avail);
        _fixture.Memory.TryGetSlice(_fixture.Driver.Config.DeviceArea, SplitRingLayout.UsedRingSize(SplitRingFixture.Size), out _used);
        _driver = new Thread(DriverLoop) { IsBackground = true, Name = "bench-driver" };
        _driver.Start();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop = true;
        _driver.Join();
        _fixture.Dispose();
    }

    [Benchmark(OperationsPerInvoke = ChainsPerInvoke)]
    public long CrossThread_OneDescriptor_Sustained()
    {
        long target = _processed + ChainsPerInvoke;
        Volatile.Write(ref _limit, target);
        long processed = _processed;
        var handler = default(WalkHandler);
        while (processed < target)
        {
            _queue.ProcessChains(ref handler, SplitRingFixture.Size, out int batch);
            processed += batch;

            // Publish what was used so the driver can refill; polling mode, no interrupts wanted.
            _queue.FlushUsed();
        }

        _processed = processed;
        return processed;
    }

    // The driver keeps at most Size chains outstanding: avail.idx = min(limit, used.idx + Size).
    // Slot i of the avail ring permanently holds head i, so nothing else needs writing.
    private void DriverLoop()
    {
        ushort avail = 0;
        long published = 0;
        var spin = default(SpinWait);
        while (!_stop)
        {
            ushort used = _used.LoadUInt16Acquire(SplitRingLayout.UsedIndex);
            long limit = Volatile.Read(ref _limit);
            int room = SplitRingFixture.Size - (ushort)(avail - used);
            long allowed = Math.Min(room, limit - published);
            if (allowed > 0)
            {
                avail = (ushort)(avail + allowed);
                published += allowed;
                _avail.StoreUInt16Release(SplitRingLayout.AvailIndex, avail);
                spin.Reset();
            }
            else
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }
}
