using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Benchmarks.Transport;

internal sealed class NullInterruptSink : IInterruptSink
{
    public void SignalMsi(ulong address, uint data)
    {
    }

    public void SetIntxLevel(bool asserted)
    {
    }
}
