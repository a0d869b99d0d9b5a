using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Virtio.Tests.Device;

// Records the controller's requests to the transport. OnSignal runs inside the call, so a test
// can check which locks are held when the controller raises an interrupt.
internal sealed class RecordingSignals : IVirtioTransportSignals
{
    private int _used;
    private int _config;

    internal int UsedSignals => Volatile.Read(ref _used);

    internal int ConfigSignals => Volatile.Read(ref _config);

    internal Action? OnSignal { get; set; }

    public void SignalUsedBuffers(int queueIndex)
    {
        Interlocked.Increment(ref _used);
        OnSignal?.Invoke();
    }

    public void SignalConfigChange()
    {
        Interlocked.Increment(ref _config);
        OnSignal?.Invoke();
    }
}
