using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Host.Demo;

// The demo VM's interrupt controller: every MSI or INTx assertion wakes the guest's vCPU thread.
internal sealed class DemoInterrupts : IInterruptSink, IDisposable
{
    private readonly SemaphoreSlim _pending = new(0, int.MaxValue);
    private long _count;

    internal long Count => Interlocked.Read(ref _count);

    public void SignalMsi(ulong address, uint data) => Raise();

    public void SetIntxLevel(bool asserted)
    {
        if (asserted)
        {
            Raise();
        }
    }

    // Waits for an interrupt (or the timeout); the guest then polls its rings.
    internal void Wait(TimeSpan timeout) => _pending.Wait(timeout);

    public void Dispose() => _pending.Dispose();

    private void Raise()
    {
        Interlocked.Increment(ref _count);
        _pending.Release();
    }
}
