using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Hosting;

// What a transport hands a baseline (heartbeat-only) device at DRIVER_OK; interrupts go nowhere.
internal sealed class SoakContext : IVirtioDeviceContext
{
    private readonly Virtqueue _watchdogq;
    private readonly Virtqueue _unused = new(4);

    internal SoakContext(GuestMemory memory, Virtqueue watchdogq)
    {
        Memory = memory;
        _watchdogq = watchdogq;
    }

    public GuestMemory Memory { get; }

    public ulong NegotiatedFeatures => VirtioFeatures.Version1;

    public Virtqueue GetQueue(int index) => index == 0 ? _watchdogq : _unused;

    public void SignalUsedBuffers(int queueIndex)
    {
    }

    public void SignalConfigChange()
    {
    }

    public void SetNeedsReset()
    {
    }
}
