using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Transport.Pci;

// Routes a virtio-pci function's interrupts (virtio 1.2 §4.1.4.5 "ISR status capability",
// §4.1.5.1.2 "MSI-X Vector Configuration", §4.1.5.3/§4.1.5.4 used-buffer and configuration-change
// notifications):
//
//   MSI-X enabled   queue q   -> the vector in queue_msix_vector[q] (nothing if NO_VECTOR)
//                   config    -> ISR bit 1, then the vector in config_msix_vector
//   MSI-X disabled  queue q   -> ISR bit 0, INTx asserted
//                   config    -> ISR bit 1, INTx asserted
//
// INTx is level-triggered: asserted while ISR is non-zero, MSI-X is disabled and the Command
// register's INTx-disable bit is clear. Reading the ISR returns and clears it, which deasserts the
// line (§4.1.4.5.1 device MUST clear on read). The PCI Status "interrupt" bit mirrors the same
// condition without the INTx-disable gate (PCI LB §6.2.3).
//
// Everything here is lock-free: the ISR is updated with Interlocked, vectors are single volatile
// words written by the control path, the INTx line combines concurrent updates
// (InterruptLine), and MSI-X messages go through MsixTable's own short lock.
internal sealed class PciInterruptRouter : IVirtioTransportSignals, IInterruptLevelSource
{
    private const int IsrQueue = 0x1;
    private const int IsrConfig = 0x2;

    private readonly MsixTable _msix;
    private readonly AccessReporter _reporter;
    private readonly InterruptLine _intx;
    private readonly int[] _queueVectors;
    private int _configVector = VirtioPciCommonConfigRegisters.NoVector;
    private int _isr;
    private volatile bool _intxDisabled;

    internal PciInterruptRouter(IInterruptSink sink, MsixTable msix, int queueCount, AccessReporter reporter)
    {
        _reporter = reporter;
        _msix = msix;
        _intx = new InterruptLine(sink, this);
        _queueVectors = new int[queueCount];
        _queueVectors.AsSpan().Fill(VirtioPciCommonConfigRegisters.NoVector);
    }

    internal int Isr => Volatile.Read(ref _isr);

    // PCI Status bit 3.
    internal bool InterruptStatus => Volatile.Read(ref _isr) != 0 && !_msix.Enabled;

    internal bool IntxLevel => _intx.Level;

    internal ushort ConfigVector => (ushort)Volatile.Read(ref _configVector);

    public void SignalUsedBuffers(int queueIndex)
    {
        if (_msix.Enabled)
        {
            _msix.Signal(Volatile.Read(ref _queueVectors[queueIndex]));
            return;
        }

        // §4.1.4.5.1: with MSI-X disabled the device MUST set ISR bit 0 before a queue notification.
        Interlocked.Or(ref _isr, IsrQueue);
        _intx.Update();
    }

    // The controller contained a device exception (it set DEVICE_NEEDS_RESET and raised the
    // configuration interrupt itself): log it, once per transport.
    public void DeviceFaulted(string operation, Exception exception) => _reporter.DeviceFault(operation, exception);

    public void SignalConfigChange()
    {
        // §4.1.4.5.1: the device MUST set ISR bit 1 before sending a configuration-change notification.
        Interlocked.Or(ref _isr, IsrConfig);
        if (_msix.Enabled)
        {
            _msix.Signal(Volatile.Read(ref _configVector));
            return;
        }

        _intx.Update();
    }

    public bool ComputeInterruptLevel() => Volatile.Read(ref _isr) != 0 && !_msix.Enabled && !_intxDisabled;

    internal byte ReadAndClearIsr()
    {
        int value = Interlocked.Exchange(ref _isr, 0);
        if (value != 0)
        {
            _intx.Update();
        }

        return (byte)value;
    }

    internal ushort GetQueueVector(int queue) => (ushort)Volatile.Read(ref _queueVectors[queue]);

    // §4.1.5.1.2.1: any event may be mapped to any valid vector; a mapping that cannot be honoured
    // reads back NO_VECTOR.
    internal ushort SetQueueVector(int queue, ushort vector)
    {
        ushort mapped = Validate(vector);
        Volatile.Write(ref _queueVectors[queue], mapped);
        return mapped;
    }

    internal ushort SetConfigVector(ushort vector)
    {
        ushort mapped = Validate(vector);
        Volatile.Write(ref _configVector, mapped);
        return mapped;
    }

    internal void SetIntxDisabled(bool disabled)
    {
        _intxDisabled = disabled;
        _intx.Update();
    }

    // MSI-X was enabled or disabled: the INTx line follows.
    internal void UpdateLine() => _intx.Update();

    // Virtio reset: §4.1.5.1.2.1 device MUST unmap all vectors; the ISR clears with the rest of
    // the device state, which deasserts INTx.
    internal void ResetVirtio()
    {
        Volatile.Write(ref _configVector, VirtioPciCommonConfigRegisters.NoVector);
        for (int i = 0; i < _queueVectors.Length; i++)
        {
            Volatile.Write(ref _queueVectors[i], VirtioPciCommonConfigRegisters.NoVector);
        }

        Interlocked.Exchange(ref _isr, 0);
        _intx.Update();
    }

    internal void Restore(byte isr, ushort configVector, ReadOnlySpan<ushort> queueVectors)
    {
        Volatile.Write(ref _configVector, configVector);
        for (int i = 0; i < _queueVectors.Length; i++)
        {
            Volatile.Write(ref _queueVectors[i], queueVectors[i]);
        }

        Interlocked.Exchange(ref _isr, isr);
        _intx.Update();
    }

    internal bool IsValidVector(ushort vector) => vector == VirtioPciCommonConfigRegisters.NoVector || vector < _msix.VectorCount;

    private ushort Validate(ushort vector) => IsValidVector(vector) ? vector : VirtioPciCommonConfigRegisters.NoVector;
}
