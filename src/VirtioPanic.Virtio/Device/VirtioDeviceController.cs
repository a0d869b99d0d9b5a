using System.Diagnostics;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Device;

// Design: the transport-neutral half of every virtio transport.
//
// Owns the device status machine (virtio 1.2 §2.1, §3.1), feature negotiation (§2.2), the
// per-queue registers (§4.1.4.3, §4.2.2), the configuration generation (§2.5) and the device's
// activation sessions. A transport decodes its register layout and calls the members here; it
// never re-implements a rule.
//
// Threading. Two paths:
//   control  register accesses from vCPU threads. Every one runs under _lock, which also
//            serializes the calls into the device (Activate, Reset, ResetQueue, config access,
//            AcceptFeatures), as IVirtioDevice asks.
//   notify   Notify() from any vCPU thread, lock-free: an in-flight counter, a volatile "live"
//            flag and the queue's volatile Enabled flag. Reset and queue reset clear the flags and
//            then wait for the in-flight count to drain, so once they call into the device no
//            kick is inside IVirtioDevice.Notify.
// The device's own calls (IVirtioDeviceContext) arrive from its worker threads and never take
// _lock: a device's Reset waits for its worker, and a worker blocked on _lock would deadlock it.
// DEVICE_NEEDS_RESET is therefore set with Interlocked.Or, and the control path updates _status
// with a compare-exchange loop that preserves it. Interrupts are raised through
// IVirtioTransportSignals only when the current thread does not hold _lock; a signal the device
// raises synchronously from inside Activate is deferred and raised right after the lock is
// released (RaiseDeferredSignals).
//
// Device faults (issue 19). Every call into the device (Notify, ReadConfig, WriteConfig,
// AfterConfigWrite, AcceptFeatures, Activate, ResetQueue, Reset, Quiesce) is contained: an exception never leaves the
// controller, so it never reaches the transport's caller, the hypervisor's exit handler. The
// controller counts it (DeviceFaults), sets DEVICE_NEEDS_RESET with a configuration-change
// notification when DRIVER_OK is set (§2.1.2), and tells the transport once per fault through
// IVirtioTransportSignals.DeviceFaulted (which logs the first one). What the failed call leaves
// behind: a failed ReadConfig reads zeros, a failed WriteConfig is dropped, a failed AcceptFeatures
// refuses FEATURES_OK, a failed Activate leaves the device not live (kicks are dropped until the
// driver resets it), and a failed Reset or Quiesce still completes the controller's reset.

/// <summary>
/// The device status machine, feature negotiation, queue registers and activation of one virtio
/// device, shared by every transport. A transport maps its registers onto these members and
/// reports the non-<c>Accepted</c> results as guest mistakes.
/// </summary>
/// <remarks>
/// <para>Control members are thread-safe (one lock). <see cref="Notify"/> is lock-free and
/// allocation-free and may be called concurrently from any thread.</para>
/// <para>Offered features: the device's type-specific bits (0–23, 50–63) and the ring features of
/// <see cref="VirtioFeatures.RingFeatures"/> it offers, plus VIRTIO_F_VERSION_1 and, unless
/// disabled, VIRTIO_F_RING_RESET. Every other transport bit is withheld, because nothing here
/// would honour it (virtio 1.3 §2.2.2 device MUST NOT offer what it does not support).</para>
/// </remarks>
public sealed partial class VirtioDeviceController
{
    // Device-type feature bits: 0–23 and 50–63 (virtio 1.2 §2.2 "Feature Bits").
    private const ulong DeviceTypeFeatureBits = 0x0000_0000_00FF_FFFFUL | 0xFFFC_0000_0000_0000UL;

    // Status bits the driver may set (§2.1). DEVICE_NEEDS_RESET belongs to the device.
    private const int DriverStatusBits = (int)(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk | DeviceStatus.Failed);
    private const int NeedsResetBit = (int)DeviceStatus.DeviceNeedsReset;

    // _generationState: bits 0–31 the configuration generation, bit 32 "the driver read the
    // generation since it last changed".
    private const long GenerationObserved = 1L << 32;

    private readonly Lock _lock = new();
    private readonly IVirtioDevice _device;
    private readonly GuestMemory _memory;
    private readonly IVirtioTransportSignals _signals;
    private readonly QueueRegisters[] _queues;
    private readonly ulong _offeredFeatures;
    private readonly int _configSize;

    // --- status and negotiation (control path; _status also set lock-free for NEEDS_RESET) ---
    private int _status;
    private uint _deviceFeatureSelect;
    private uint _driverFeatureSelect;
    private ulong _driverFeatures;
    private ulong _negotiatedFeatures;
    private uint _queueSelect;
    private long _generationState;

    // --- sessions ---
    private int _epoch;                  // changes on every reset and activation; written under _lock
    private DeviceSession? _session;
    private volatile bool _live;         // the device is activated: kicks reach it
    private int _notifiersInFlight;      // kicks between the liveness check and the return of IVirtioDevice.Notify
    private bool _deferredConfigSignal;  // under _lock
    private volatile bool _anyDeferred;  // written under _lock; read lock-free as a fast check
    private bool _replayKicks;           // under _lock: replay pending kicks after the lock is released

    // --- counters ---
    private long _droppedNotifications;
    private long _droppedSignals;
    private long _deviceFaults;          // Interlocked only; a statistic, orders nothing

    /// <summary>Creates a controller for <paramref name="device"/> in its power-on state.</summary>
    /// <param name="device">The device function.</param>
    /// <param name="memory">The guest's memory, where the driver places the rings.</param>
    /// <param name="signals">The transport's interrupt paths.</param>
    /// <param name="offerRingReset">Whether to offer VIRTIO_F_RING_RESET (per-queue reset, virtio 1.2 §2.6.1). Defaults to true.</param>
    /// <exception cref="ArgumentException">The device reports an invalid queue count, queue size or configuration size.</exception>
    public VirtioDeviceController(IVirtioDevice device, GuestMemory memory, IVirtioTransportSignals signals, bool offerRingReset = true)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(signals);

        int queueCount = device.QueueCount;
        if (queueCount is < 0 or > ushort.MaxValue)
        {
            throw new ArgumentException("The device's queue count must be between 0 and 65535.", nameof(device));
        }

        if (device.ConfigSize < 0)
        {
            throw new ArgumentException("The device's configuration size must not be negative.", nameof(device));
        }

        _device = device;
        _memory = memory;
        _signals = signals;
        _configSize = device.ConfigSize;
        _offeredFeatures = (device.DeviceFeatures & (DeviceTypeFeatureBits | VirtioFeatures.RingFeatures))
            | VirtioFeatures.Version1
            | (offerRingReset ? VirtioFeatures.RingReset : 0);
        _queues = new QueueRegisters[queueCount];
        for (int i = 0; i < queueCount; i++)
        {
            ushort max = device.GetMaxQueueSize(i);
            if (max == 0 || max > SplitRingLayout.MaxQueueSize || (max & (max - 1)) != 0)
            {
                throw new ArgumentException($"The device's maximum size for queue {i} must be a power of two between 1 and 32768.", nameof(device));
            }

            _queues[i] = new QueueRegisters(max);
        }
    }

    /// <summary>The device behind this controller.</summary>
    public IVirtioDevice Device => _device;

    /// <summary>The guest's memory.</summary>
    public GuestMemory Memory => _memory;

    /// <summary>The feature bits the device offers (device_feature / DeviceFeatures).</summary>
    public ulong OfferedFeatures => _offeredFeatures;

    /// <summary>Number of queues (num_queues).</summary>
    public int QueueCount => _queues.Length;

    /// <summary>Size in bytes of the device-specific configuration space.</summary>
    public int ConfigSize => _configSize;

    /// <summary>The device status as the driver reads it.</summary>
    public DeviceStatus Status => (DeviceStatus)(byte)Volatile.Read(ref _status);

    /// <summary>The feature bits the driver wrote, as it reads them back (valid or not).</summary>
    public ulong DriverFeatures
    {
        get
        {
            lock (_lock)
            {
                return _driverFeatures;
            }
        }
    }

    /// <summary>The features both sides agreed on at FEATURES_OK; 0 before.</summary>
    public ulong NegotiatedFeatures
    {
        get
        {
            lock (_lock)
            {
                return _negotiatedFeatures;
            }
        }
    }

    /// <summary>Whether the device is activated (DRIVER_OK accepted and not reset since).</summary>
    public bool IsLive => _live;

    /// <summary>Kicks dropped because the queue did not exist, was disabled, or the device was not live.</summary>
    public long DroppedNotifications => Interlocked.Read(ref _droppedNotifications);

    /// <summary>Device signals dropped because they came from a finished session or for a disabled queue.</summary>
    public long DroppedSignals => Interlocked.Read(ref _droppedSignals);

    /// <summary>
    /// Exceptions thrown by the device's members and contained here (each one set
    /// DEVICE_NEEDS_RESET, or completed the reset it interrupted).
    /// </summary>
    public long DeviceFaults => Interlocked.Read(ref _deviceFaults);

    // ---------------------------------------------------------------------------------------
    // Features (virtio 1.2 §2.2; PCI §4.1.4.3 device_feature_select..driver_feature; MMIO §4.2.2
    // DeviceFeatures/DeviceFeaturesSel/DriverFeatures/DriverFeaturesSel).
    // ---------------------------------------------------------------------------------------

    /// <summary>device_feature_select / DeviceFeaturesSel.</summary>
    public uint DeviceFeatureSelect
    {
        get
        {
            lock (_lock)
            {
                return _deviceFeatureSelect;
            }
        }
    }

    /// <summary>driver_feature_select / DriverFeaturesSel.</summary>
    public uint DriverFeatureSelect
    {
        get
        {
            lock (_lock)
            {
                return _driverFeatureSelect;
            }
        }
    }

    /// <summary>Selects the 32-bit window <see cref="ReadDeviceFeatures"/> shows (0: bits 0–31, 1: bits 32–63, ...).</summary>
    /// <param name="value">The window index.</param>
    public void WriteDeviceFeatureSelect(uint value)
    {
        lock (_lock)
        {
            _deviceFeatureSelect = value;
        }
    }

    /// <summary>The offered features in the selected window; 0 for every window beyond bit 63 (§4.1.4.3.1 device MUST).</summary>
    public uint ReadDeviceFeatures()
    {
        lock (_lock)
        {
            return Window(_offeredFeatures, _deviceFeatureSelect);
        }
    }

    /// <summary>Selects the 32-bit window <see cref="WriteDriverFeatures"/> and <see cref="ReadDriverFeatures"/> address.</summary>
    /// <param name="value">The window index.</param>
    public void WriteDriverFeatureSelect(uint value)
    {
        lock (_lock)
        {
            _driverFeatureSelect = value;
        }
    }

    /// <summary>The driver's accepted features in the selected window, as written.</summary>
    public uint ReadDriverFeatures()
    {
        lock (_lock)
        {
            return Window(_driverFeatures, _driverFeatureSelect);
        }
    }

    /// <summary>
    /// Records the driver's accepted features for the selected window. Unoffered bits are recorded
    /// too (they read back) and make FEATURES_OK fail.
    /// </summary>
    /// <param name="value">The 32 bits of the window.</param>
    /// <returns><see cref="RegisterWriteResult.Accepted"/>, <see cref="RegisterWriteResult.FeaturesLocked"/> after FEATURES_OK, or <see cref="RegisterWriteResult.FeatureWindowOutOfRange"/>.</returns>
    public RegisterWriteResult WriteDriverFeatures(uint value)
    {
        lock (_lock)
        {
            AssertInvariants();
            if ((Volatile.Read(ref _status) & (int)DeviceStatus.FeaturesOk) != 0)
            {
                return RegisterWriteResult.FeaturesLocked;
            }

            switch (_driverFeatureSelect)
            {
                case 0:
                    _driverFeatures = (_driverFeatures & 0xFFFF_FFFF_0000_0000UL) | value;
                    return RegisterWriteResult.Accepted;
                case 1:
                    _driverFeatures = (_driverFeatures & 0x0000_0000_FFFF_FFFFUL) | ((ulong)value << 32);
                    return RegisterWriteResult.Accepted;
                default:
                    // No bits exist above 63; a zero write is what a careful driver does.
                    return value == 0 ? RegisterWriteResult.Accepted : RegisterWriteResult.FeatureWindowOutOfRange;
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Device status (virtio 1.2 §2.1, §2.4, §3.1).
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// The driver writes the device status. 0 resets the device (synchronously: the status reads
    /// 0 when this returns). Setting FEATURES_OK validates the accepted features; when refused the
    /// bit simply does not stick (§2.2.2). Setting DRIVER_OK activates the device.
    /// </summary>
    /// <param name="value">The byte the driver wrote.</param>
    /// <returns>What happened; anything but Accepted/Reset/Activated is a driver mistake to report.</returns>
    public DeviceStatusWriteResult WriteStatus(byte value)
    {
        DeviceStatusWriteResult result;
        lock (_lock)
        {
            AssertInvariants();
            if (value == 0)
            {
                ResetUnsynchronized();
                result = DeviceStatusWriteResult.Reset;
            }
            else
            {
                result = WriteStatusUnsynchronized(value);
            }
        }

        AfterControl();
        return result;
    }

    /// <summary>Resets the device as a status write of 0 does (host-initiated, e.g. a VM or function-level reset).</summary>
    public void Reset()
    {
        lock (_lock)
        {
            ResetUnsynchronized();
        }

        AfterControl();
    }

    // ---------------------------------------------------------------------------------------
    // Device-specific configuration and its generation (virtio 1.2 §2.5).
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// config_generation / ConfigGeneration. Changes whenever device configuration changed since
    /// the driver last read the generation, so a driver that reads the generation before and after
    /// reading configuration detects a torn read (§2.5.1, §4.1.4.3.1 device MUST). The value moves
    /// by at most one between two reads, so an 8-bit view (PCI) never wraps back to the value the
    /// driver saw before.
    /// </summary>
    public uint ReadConfigGeneration()
    {
        while (true)
        {
            long state = Volatile.Read(ref _generationState);
            if (Interlocked.CompareExchange(ref _generationState, state | GenerationObserved, state) == state)
            {
                return (uint)state;
            }
        }
    }

    /// <summary>Reads device-specific configuration when the range lies inside it.</summary>
    /// <param name="offset">Byte offset in the configuration space.</param>
    /// <param name="data">Destination; zero-filled when the range is out of bounds.</param>
    /// <returns>False (and zeros) when the range is not wholly inside the configuration space.</returns>
    public bool TryReadDeviceConfig(uint offset, Span<byte> data)
    {
        if (data.IsEmpty || (ulong)offset + (ulong)data.Length > (ulong)_configSize)
        {
            data.Clear();
            return false;
        }

        lock (_lock)
        {
            try
            {
                _device.ReadConfig(offset, data);
            }
            catch (Exception ex)
            {
                ContainFault(nameof(IVirtioDevice.ReadConfig), ex);
                data.Clear();
            }
        }

        AfterControl();
        return true;
    }

    /// <summary>Writes device-specific configuration when the range lies inside it; the device validates the value.</summary>
    /// <param name="offset">Byte offset in the configuration space.</param>
    /// <param name="data">The bytes the driver wrote.</param>
    /// <returns>False (write dropped) when the range is not wholly inside the configuration space.</returns>
    public bool TryWriteDeviceConfig(uint offset, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty || (ulong)offset + (ulong)data.Length > (ulong)_configSize)
        {
            return false;
        }

        lock (_lock)
        {
            try
            {
                _device.WriteConfig(offset, data);
            }
            catch (Exception ex)
            {
                ContainFault(nameof(IVirtioDevice.WriteConfig), ex);
                // Dropped; DEVICE_NEEDS_RESET is set.
            }
        }

        AfterControl();

        // The post-access step: no lock of this controller is held, and the guest's write has not
        // completed yet. Whatever the device runs here (the watchdog's inline panic handling, which
        // may reset this transport) takes the register lock afresh, never nested.
        try
        {
            _device.AfterConfigWrite();
        }
        catch (Exception ex)
        {
            ContainFault(nameof(IVirtioDevice.AfterConfigWrite), ex);
        }

        return true;
    }

    // The queue a session's device asks for; a bad index is a device bug, not guest input.
    internal Virtqueue GetQueue(int index)
    {
        if ((uint)index >= (uint)_queues.Length)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(index));
        }

        return _queues[index].Queue;
    }

    private static uint Window(ulong bits, uint select) => select switch
    {
        0 => (uint)bits,
        1 => (uint)(bits >> 32),
        _ => 0,
    };

    private DeviceStatusWriteResult WriteStatusUnsynchronized(byte value)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        int current = Volatile.Read(ref _status);
        int currentDriverBits = current & DriverStatusBits;
        int requested = value & DriverStatusBits;

        // §2.1.1: the driver never clears a bit; it resets instead. Ignore the whole write.
        if ((currentDriverBits & ~requested) != 0)
        {
            return DeviceStatusWriteResult.ClearedBitsIgnored;
        }

        // Echoing DEVICE_NEEDS_RESET back (read-modify-write drivers do) is not a mistake.
        DeviceStatusWriteResult result = (value & ~(DriverStatusBits | NeedsResetBit)) != 0
            ? DeviceStatusWriteResult.ReservedBitsIgnored
            : DeviceStatusWriteResult.Accepted;

        int added = requested & ~currentDriverBits;
        int next = requested;
        if ((added & (int)DeviceStatus.FeaturesOk) != 0)
        {
            DeviceStatusWriteResult refusal = CheckFeaturesUnsynchronized(next);
            if (refusal != DeviceStatusWriteResult.Accepted)
            {
                // §2.2.2: the device refuses by not letting FEATURES_OK stick; DRIVER_OK cannot
                // follow in the same write.
                next &= ~(int)(DeviceStatus.FeaturesOk | DeviceStatus.DriverOk);
                added &= ~(int)DeviceStatus.DriverOk;
                result = refusal;
            }
            else
            {
                _negotiatedFeatures = _driverFeatures;
            }
        }

        bool activate = false;
        if ((added & (int)DeviceStatus.DriverOk) != 0)
        {
            if ((next & (int)DeviceStatus.FeaturesOk) == 0)
            {
                next &= ~(int)DeviceStatus.DriverOk;
                result = DeviceStatusWriteResult.DriverOkWithoutFeaturesOk;
            }
            else if ((current & NeedsResetBit) != 0)
            {
                next &= ~(int)DeviceStatus.DriverOk;
                result = DeviceStatusWriteResult.DriverOkWhileNeedsReset;
            }
            else
            {
                activate = true;
            }
        }

        SetDriverBitsUnsynchronized(next);
        if (activate)
        {
            ActivateUnsynchronized();
            if (result == DeviceStatusWriteResult.Accepted)
            {
                result = DeviceStatusWriteResult.Activated;
            }
        }

        return result;
    }

    private DeviceStatusWriteResult CheckFeaturesUnsynchronized(int nextStatus)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        const int Prerequisites = (int)(DeviceStatus.Acknowledge | DeviceStatus.Driver);
        if ((nextStatus & Prerequisites) != Prerequisites)
        {
            return DeviceStatusWriteResult.FeaturesOkOutOfOrder;
        }

        if ((_driverFeatures & ~_offeredFeatures) != 0)
        {
            return DeviceStatusWriteResult.FeaturesRefusedUnoffered;
        }

        if ((_driverFeatures & VirtioFeatures.Version1) == 0)
        {
            return DeviceStatusWriteResult.FeaturesRefusedWithoutVersion1;
        }

        return AcceptFeaturesContained(_driverFeatures) ? DeviceStatusWriteResult.Accepted : DeviceStatusWriteResult.FeaturesRefusedByDevice;
    }

    // Replaces the driver-owned bits, keeping DEVICE_NEEDS_RESET, which a device worker may set
    // concurrently without the lock.
    private void SetDriverBitsUnsynchronized(int driverBits)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        while (true)
        {
            int current = Volatile.Read(ref _status);
            int next = (current & NeedsResetBit) | (driverBits & DriverStatusBits);
            if (Interlocked.CompareExchange(ref _status, next, current) == current)
            {
                return;
            }
        }
    }

    private void ActivateUnsynchronized()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        int epoch = _epoch + 1;
        Volatile.Write(ref _epoch, epoch);
        var session = new DeviceSession(this, epoch, _negotiatedFeatures);
        _session = session;

        // Under the lock: serialized with Reset/ResetQueue as IVirtioDevice requires. Signals the
        // device raises from inside Activate on this thread are deferred until the lock is released.
        try
        {
            _device.Activate(session);
        }
        catch (Exception ex)
        {
            ContainFault(nameof(IVirtioDevice.Activate), ex);
            // Not live: kicks are dropped; the driver sees DEVICE_NEEDS_RESET and resets.
            return;
        }

        _live = true;
        _replayKicks = true;
    }

    // Full device reset (§2.4.1): afterwards the device neither notifies nor touches the queues
    // until the driver initializes it again, and the status reads 0.
    private void ResetUnsynchronized(bool forRestore = false)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);

        // Finish the session first: its signals become no-ops, and no new kick reaches the device.
        Volatile.Write(ref _epoch, _epoch + 1);
        _session = null;
        _live = false;
        foreach (QueueRegisters queue in _queues)
        {
            queue.Enabled = false;
        }

        WaitForNotifiersUnsynchronized();

        // The device returns only once it no longer touches guest memory (IVirtioDevice.Reset). A
        // restore is not a guest reset: the device quiesces without a reset's side effects.
        try
        {
            if (forRestore)
            {
                _device.Quiesce();
            }
            else
            {
                _device.Reset();
            }
        }
        catch (Exception ex)
        {
            ContainFault(forRestore ? nameof(IVirtioDevice.Quiesce) : nameof(IVirtioDevice.Reset), ex);
            // The controller's reset completes regardless (status 0 below clears the bit again).
        }

        foreach (QueueRegisters queue in _queues)
        {
            queue.Reset();
        }

        _deviceFeatureSelect = 0;
        _driverFeatureSelect = 0;
        _driverFeatures = 0;
        _negotiatedFeatures = 0;
        _queueSelect = 0;
        _deferredConfigSignal = false;
        _anyDeferred = false;
        _replayKicks = false;
        Volatile.Write(ref _status, 0);
    }

    // Waits until no kick is between its liveness check and the return of IVirtioDevice.Notify.
    private void WaitForNotifiersUnsynchronized()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);

        // Full fence, pairing with the Interlocked.Increment in Notify (a Dekker handshake): the
        // stores that turned delivery off must be visible before we read the in-flight count, or a
        // kick could pass its check after we saw zero and reach a device that is being reset.
        Interlocked.MemoryBarrier();
        var spin = default(SpinWait);
        while (Volatile.Read(ref _notifiersInFlight) != 0)
        {
            spin.SpinOnce();
        }
    }

    // Sets DEVICE_NEEDS_RESET for an error the controller found (a rejected queue configuration).
    // §2.1.2: if DRIVER_OK is set, the device MUST send a configuration-change notification.
    private void SetNeedsResetUnsynchronized()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        int previous = Interlocked.Or(ref _status, NeedsResetBit);
        if ((previous & NeedsResetBit) == 0 && (previous & (int)DeviceStatus.DriverOk) != 0)
        {
            DeferConfigSignalUnsynchronized();
        }
    }

    private void DeferConfigSignalUnsynchronized()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        _deferredConfigSignal = true;
        _anyDeferred = true;
    }

    // The device threw from one of its members (see Device faults in the design notes). Counts it,
    // sets DEVICE_NEEDS_RESET (with the §2.1.2 configuration-change notification when DRIVER_OK is
    // set: deferred when this thread holds the lock, else raised now) and tells the transport.
    private void ContainFault(string operation, Exception exception)
    {
        Interlocked.Increment(ref _deviceFaults);
        int previous = Interlocked.Or(ref _status, NeedsResetBit);
        if ((previous & NeedsResetBit) == 0 && (previous & (int)DeviceStatus.DriverOk) != 0)
        {
            BumpGeneration();
            if (_lock.IsHeldByCurrentThread)
            {
                DeferConfigSignalUnsynchronized();
            }
            else
            {
                RaiseContained(() => _signals.SignalConfigChange());
            }
        }

        RaiseContained(() => _signals.DeviceFaulted(operation, exception));
    }

    // A transport callback made while containing a device fault must not throw out of it either.
    private static void RaiseContained(Action signal)
    {
#pragma warning disable CA1031 // containment: nothing may escape to the hypervisor's caller
        try
        {
            signal();
        }
        catch (Exception)
        {
            // The transport's own signal failed; the fault is counted in DeviceFaults regardless.
        }
#pragma warning restore CA1031
    }

    private bool AcceptFeaturesContained(ulong features)
    {
        try
        {
            return _device.AcceptFeatures(features);
        }
        catch (Exception ex)
        {
            ContainFault(nameof(IVirtioDevice.AcceptFeatures), ex);
            return false;
        }
    }

    // Marks a configuration change: the generation moves if the driver saw the current one.
    private void BumpGeneration()
    {
        while (true)
        {
            long state = Volatile.Read(ref _generationState);
            if ((state & GenerationObserved) == 0)
            {
                // The driver has not read the generation since the last change: it will see a
                // different value from the one it holds already.
                return;
            }

            long next = (uint)((uint)state + 1);
            if (Interlocked.CompareExchange(ref _generationState, next, state) == state)
            {
                return;
            }
        }
    }

    // Work that must run after the lock is released: interrupts the device raised while the lock
    // was held on this thread, and kicks that arrived before the device went live.
    // The post-access step of every control call. Control calls never nest: nothing the device
    // does under the register lock calls back into a transport (host callbacks that may reset it
    // run in IVirtioDevice.AfterConfigWrite, after the lock is released).
    private void AfterControl()
    {
        Debug.Assert(!_lock.IsHeldByCurrentThread, "a control call nested inside another on this thread");
        RaiseDeferredSignals();
        ReplayPendingKicks();
    }

    [Conditional("DEBUG")]
    private void AssertInvariants()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        int status = Volatile.Read(ref _status);
        Debug.Assert((status & (int)DeviceStatus.DriverOk) == 0 || (status & (int)DeviceStatus.FeaturesOk) != 0, "DRIVER_OK without FEATURES_OK");
        Debug.Assert((status & (int)DeviceStatus.FeaturesOk) != 0 || _negotiatedFeatures == 0, "negotiated features without FEATURES_OK");
        Debug.Assert(!_live || _session is not null, "live without a session");
    }
}
