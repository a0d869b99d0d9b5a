using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Benchmarks.Transport;

// A device that does nothing on a kick but count it, so the benchmarks measure transport dispatch only.
internal sealed class BenchDevice : IVirtioDevice
{
    private long _notifies;

    public uint DeviceId => 35;

    public ulong DeviceFeatures => VirtioFeatures.EventIndex;

    public int QueueCount => 2;

    public int ConfigSize => 8;

    internal long Notifies => _notifies;

    public ushort GetMaxQueueSize(int queueIndex) => 256;

    public void ReadConfig(uint offset, Span<byte> data) => data.Clear();

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
    }

    public bool AcceptFeatures(ulong features) => true;

    public void Activate(IVirtioDeviceContext context)
    {
    }

    public void Notify(int queueIndex) => _notifies++;

    public void ResetQueue(int queueIndex)
    {
    }

    public void Reset()
    {
    }
}
