using System.Runtime.CompilerServices;

namespace VirtioPanic.Virtio.Device;

// The two paths that run outside the control lock: driver kicks (vCPU threads) and the device's
// requests through its session (device worker threads).
public sealed partial class VirtioDeviceController
{
    /// <summary>
    /// An available-buffer notification (a kick) from the driver. Lock-free and allocation-free.
    /// Reaches <see cref="IVirtioDevice.Notify"/> only for an enabled queue of a live device;
    /// other kicks are dropped, counted in <see cref="DroppedNotifications"/>, and replayed to the
    /// device if it goes live later (buffers published before DRIVER_OK are not left waiting).
    /// </summary>
    /// <param name="queueIndex">The queue the driver named.</param>
    /// <returns>True when the kick reached the device.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Notify(int queueIndex)
    {
        QueueRegisters[] queues = _queues;
        if ((uint)queueIndex >= (uint)queues.Length)
        {
            Interlocked.Increment(ref _droppedNotifications);
            return false;
        }

        QueueRegisters queue = queues[queueIndex];

        // Announce the kick before checking liveness (full fence); reset clears liveness, fences,
        // then waits for the count to drain (WaitForNotifiersUnsynchronized).
        Interlocked.Increment(ref _notifiersInFlight);
        try
        {
            if (_live && queue.Enabled)
            {
                try
                {
                    _device.Notify(queueIndex);
                }
                catch (Exception ex)
                {
                    ContainFault(nameof(IVirtioDevice.Notify), ex);
                    // Contained: the kick reached the device, which failed; DEVICE_NEEDS_RESET is set.
                }

                return true;
            }
        }
        finally
        {
            Interlocked.Decrement(ref _notifiersInFlight);
        }

        queue.KickPending = true;
        Interlocked.Increment(ref _droppedNotifications);
        return false;
    }

    internal void SignalUsedBuffersFromSession(int epoch, int queueIndex)
    {
        if ((uint)queueIndex >= (uint)_queues.Length)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(queueIndex));
        }

        QueueRegisters queue = _queues[queueIndex];
        if (epoch != Volatile.Read(ref _epoch) || !queue.Enabled)
        {
            Interlocked.Increment(ref _droppedSignals);
            return;
        }

        if (_lock.IsHeldByCurrentThread)
        {
            // Raised from inside a control call on this thread (e.g. IVirtioDevice.Activate):
            // interrupts are raised only after the lock is released.
            queue.DeferredSignal = true;
            _anyDeferred = true;
            return;
        }

        _signals.SignalUsedBuffers(queueIndex);
    }

    internal void SignalConfigChangeFromSession(int epoch)
    {
        if (epoch != Volatile.Read(ref _epoch))
        {
            Interlocked.Increment(ref _droppedSignals);
            return;
        }

        BumpGeneration();
        if (_lock.IsHeldByCurrentThread)
        {
            DeferConfigSignalUnsynchronized();
            return;
        }

        _signals.SignalConfigChange();
    }

    internal void SetNeedsResetFromSession(int epoch)
    {
        if (epoch != Volatile.Read(ref _epoch))
        {
            Interlocked.Increment(ref _droppedSignals);
            return;
        }

        // Lock-free: the device's worker must never wait for the control lock (see Design).
        int previous = Interlocked.Or(ref _status, NeedsResetBit);
        if ((previous & NeedsResetBit) != 0 || (previous & (int)DeviceStatus.DriverOk) == 0)
        {
            return;
        }

        // §2.1.2: DEVICE_NEEDS_RESET with DRIVER_OK set MUST be followed by a configuration-change notification.
        if (_lock.IsHeldByCurrentThread)
        {
            DeferConfigSignalUnsynchronized();
            return;
        }

        _signals.SignalConfigChange();
    }

    private void RaiseDeferredSignals()
    {
        while (_anyDeferred)
        {
            int queueIndex = -1;
            bool config = false;
            lock (_lock)
            {
                for (int i = 0; i < _queues.Length; i++)
                {
                    if (_queues[i].DeferredSignal)
                    {
                        _queues[i].DeferredSignal = false;
                        queueIndex = i;
                        break;
                    }
                }

                if (queueIndex < 0)
                {
                    config = _deferredConfigSignal;
                    _deferredConfigSignal = false;
                    _anyDeferred = false;
                }
            }

            if (queueIndex >= 0)
            {
                _signals.SignalUsedBuffers(queueIndex);
            }
            else if (config)
            {
                _signals.SignalConfigChange();
            }
        }
    }

    private void ReplayPendingKicks()
    {
        if (!_live)
        {
            return;
        }

        lock (_lock)
        {
            if (!_replayKicks)
            {
                return;
            }

            _replayKicks = false;
        }

        // Outside the lock, through the ordinary notify path; a spurious kick is harmless
        // (virtio 1.2 §2.7.10.2 device MUST handle spurious notifications).
        for (int i = 0; i < _queues.Length; i++)
        {
            QueueRegisters queue = _queues[i];
            if (queue.KickPending && queue.Enabled)
            {
                queue.KickPending = false;
                Notify(i);
            }
        }
    }
}
