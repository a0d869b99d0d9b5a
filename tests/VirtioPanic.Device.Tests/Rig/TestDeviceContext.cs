using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Tests.Rig;

// What a transport would hand the device at DRIVER_OK, with counters for what the device asked for.
internal sealed class TestDeviceContext : IVirtioDeviceContext
{
    private readonly Virtqueue[] _queues;
    private readonly int[] _signals;
    private int _configChanges;
    private int _needsReset;

    public TestDeviceContext(GuestMemory memory, ulong negotiatedFeatures, Virtqueue[] queues)
    {
        Memory = memory;
        NegotiatedFeatures = negotiatedFeatures;
        _queues = queues;
        _signals = new int[queues.Length];
    }

    public GuestMemory Memory { get; }

    public ulong NegotiatedFeatures { get; }

    public int ConfigChanges => Volatile.Read(ref _configChanges);

    public bool NeedsReset => Volatile.Read(ref _needsReset) != 0;

    public int NeedsResetCount => Volatile.Read(ref _needsReset);

    public Virtqueue GetQueue(int index) => _queues[index];

    public int Signals(int queueIndex) => Volatile.Read(ref _signals[queueIndex]);

    // A transport whose interrupt path throws (a bug on the hypervisor's side): the device must contain it.
    public bool ThrowOnSignal { get; set; }

    public void SignalUsedBuffers(int queueIndex)
    {
        Interlocked.Increment(ref _signals[queueIndex]);
        if (ThrowOnSignal)
        {
            throw new InvalidOperationException($"interrupt sink fault on queue {queueIndex}");
        }
    }

    public void SignalConfigChange() => Interlocked.Increment(ref _configChanges);

    public void SetNeedsReset() => Interlocked.Increment(ref _needsReset);
}
