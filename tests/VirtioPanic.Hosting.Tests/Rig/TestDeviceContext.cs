using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Hosting.Tests.Rig;

// What a transport hands the device at DRIVER_OK.
internal sealed class TestDeviceContext : IVirtioDeviceContext
{
    private readonly Virtqueue[] _queues;

    public TestDeviceContext(GuestMemory memory, ulong negotiatedFeatures, Virtqueue[] queues)
    {
        Memory = memory;
        NegotiatedFeatures = negotiatedFeatures;
        _queues = queues;
    }

    public GuestMemory Memory { get; }

    public ulong NegotiatedFeatures { get; }

    public Virtqueue GetQueue(int index) => _queues[index];

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
