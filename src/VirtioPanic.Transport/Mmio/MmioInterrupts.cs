using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Transport.Mmio;

// The virtio-mmio interrupt: one level-triggered line, asserted while any InterruptStatus bit is
// set (virtio 1.2 §4.2.3.4). Bits are set by the device (§4.2.2.1: each stays set from the event
// until the driver acknowledges it; undefined bits are 0) and cleared by InterruptACK or reset.
// Lock-free: Interlocked on the status word, InterruptLine combines concurrent level updates.
internal sealed class MmioInterrupts : IVirtioTransportSignals, IInterruptLevelSource
{
    private readonly InterruptLine _line;
    private readonly AccessReporter _reporter;
    private int _status;

    internal MmioInterrupts(IInterruptSink sink, AccessReporter reporter)
    {
        _line = new InterruptLine(sink, this);
        _reporter = reporter;
    }

    internal uint Status => (uint)Volatile.Read(ref _status);

    internal bool Level => _line.Level;

    public void SignalUsedBuffers(int queueIndex)
    {
        Interlocked.Or(ref _status, (int)VirtioMmioRegisters.InterruptUsedBuffer);
        _line.Update();
    }

    public void SignalConfigChange()
    {
        Interlocked.Or(ref _status, (int)VirtioMmioRegisters.InterruptConfigChange);
        _line.Update();
    }

    // The controller contained a device exception (it set DEVICE_NEEDS_RESET and raised the
    // configuration interrupt itself): log it, once per transport.
    public void DeviceFaulted(string operation, Exception exception) => _reporter.DeviceFault(operation, exception);

    public bool ComputeInterruptLevel() => Volatile.Read(ref _status) != 0;

    internal void Acknowledge(uint bits)
    {
        Interlocked.And(ref _status, ~(int)bits);
        _line.Update();
    }

    internal void Set(uint bits)
    {
        Interlocked.Exchange(ref _status, (int)bits);
        _line.Update();
    }
}
