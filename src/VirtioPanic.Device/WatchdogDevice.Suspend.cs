using VirtioPanic.Device.Protocol;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Device;

// Design: a stop of the rings is not a driver reset until someone says so.
//
// A vhost-user front end stops the rings (GET_VRING_BASE) both when the VM stops (QMP `stop`,
// migration, savevm) and when the guest's driver resets the device, and the protocol does not
// say which (spec §7.3, WDT-DEV-39). A reset disarms the watchdog and drops the buffers the
// device holds; doing that for a VM stop would leave a guest that is continued later with a
// disarmed watchdog it believes armed. So the transport suspends instead: the queue workers stop,
// committed eventq records are completed while the rings are still usable (nothing accepted
// waits for a session that may never come back), the remaining held buffers are kept by guest
// address (they are re-translated against whatever memory is mapped at resume), and the
// watchdog's clock stops, so a suspended device never expires. Then exactly one of these ends it:
//   - TryResume: the rings restarted exactly where they stopped (a VM that continues);
//   - Reset: the transport saw a different restart, the front end went away, or the host knows
//     (from the VMM's run state, e.g. QMP) that the VM kept running: it was a driver reset after
//     all, and the reset happens now, with its event;
//   - Activate on a suspended device: treated as a reset first.
// The clock runs again when the suspension ends and the host has not paused the device itself
// (_hostPaused, the VM's run state): both flags are guarded by _lock, and _timer's pause is only
// changed with _lock held, so the two sources of "not running" cannot undo each other.
public sealed partial class WatchdogDevice
{
    private Action<WatchdogDevice>? _suspendObserver;

    /// <summary>True while the transport keeps the driver session across a stop of its rings (see <see cref="Suspend"/>).</summary>
    public bool IsSuspended
    {
        get
        {
            lock (_lock)
            {
                return _suspended;
            }
        }
    }

    /// <summary>
    /// The transport stopped the rings without knowing whether the VM stopped or the driver reset
    /// the device (vhost-user: <c>GET_VRING_BASE</c>): the device stops processing, completes the
    /// eventq records the driver already committed, keeps the buffers it holds and the watchdog as
    /// it is, and stops the watchdog's clock until <see cref="TryResume"/> continues the session or
    /// <see cref="Reset"/> ends it.
    /// </summary>
    /// <returns>True (the session is kept), also when it already was; false when no driver was bound (nothing to keep).</returns>
    public bool Suspend()
    {
        Action<WatchdogDevice>? observer;
        lock (_lock)
        {
            if (_suspended)
            {
                return true;
            }

            if (_context is null || _disposed)
            {
                return false;
            }

            _watchdogWorker.Stop();
            _noticeWorker.Stop();

            // Records committed before the stop are consumed and completed now, on rings the
            // driver still owns (the front end waits for our GET_VRING_BASE reply before it lets
            // the guest go on); WDT-DEV-39.
            _eventWorker.StopCompletingCommitted();
            _restoredHeld = _eventWorker.SaveHeld();
            _eventWorker.ClearHeld();
            _context = null;
            _suspended = true;
            _timer.Pause();
            observer = Volatile.Read(ref _suspendObserver);
        }

        if (_stateLogs.TryAcquire(out _))
        {
            WatchdogDeviceLog.Suspended(_logger, Id, _restoredHeld?.Length ?? 0);
        }

        observer?.Invoke(this);
        return true;
    }

    /// <summary>
    /// Continues the session kept by <see cref="Suspend"/> on rings that restarted where they
    /// stopped: the held buffers are taken up again and the watchdog's clock resumes (with the
    /// resume grace) unless the host paused the device.
    /// </summary>
    /// <param name="context">The transport's new context.</param>
    /// <returns>False when no session is kept (never suspended, or reset since): nothing changed.</returns>
    public bool TryResume(IVirtioDeviceContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        lock (_lock)
        {
            if (!_suspended || _disposed)
            {
                return false;
            }

            if ((WatchdogFeatures)(context.NegotiatedFeatures & (ulong)_offered) != _negotiated)
            {
                // Different features: not the session that stopped.
                return false;
            }

            _context = context;
            Volatile.Write(ref _needsReset, 0);
            StartWorkerUnsynchronized(WatchdogProtocol.WatchdogQueue);
            StartWorkerUnsynchronized(WatchdogProtocol.EventQueue);
            StartWorkerUnsynchronized(WatchdogProtocol.NoticeQueue);
            _restoredHeld = null;
            EndSuspensionUnsynchronized();
        }

        if (_stateLogs.TryAcquire(out _))
        {
            WatchdogDeviceLog.Resumed(_logger, Id);
        }

        // Whatever the driver made available while the rings were stopped.
        _watchdogWorker.Kick();
        _eventWorker.Kick();
        _noticeWorker.Kick();
        return true;
    }

    /// <summary>
    /// Sets a callback invoked each time <see cref="Suspend"/> keeps a session, on the transport's
    /// thread after the device released its lock and before the transport answers the front end;
    /// null removes it. A host that knows the VM's run state (QMP) uses it to tell a VM stop from a
    /// driver reset, and calls <see cref="Reset"/> for the latter. It must not block or throw.
    /// </summary>
    /// <param name="observer">Called with this device.</param>
    public void SetSuspendObserver(Action<WatchdogDevice>? observer) => Volatile.Write(ref _suspendObserver, observer);

    // Under _lock: the suspension is over (resumed or reset); the clock runs unless the host paused it.
    private void EndSuspensionUnsynchronized()
    {
        if (!_suspended)
        {
            return;
        }

        _suspended = false;
        if (!_hostPaused)
        {
            _timer.Resume();
            _vcpus?.OnResumed();   // WDT-DEV-48: the grace applies to both stages
        }
    }
}
