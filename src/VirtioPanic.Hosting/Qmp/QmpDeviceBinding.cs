using Microsoft.Extensions.Logging;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting.Qmp;

// Design: the VM's run state, as the VMM's monitor reports it, is the device's run state.
//
// STOP / RESUME (and query-status at each connection, through RunStateChanged) pause and resume
// the watchdog's clock. RESET is a VM reset: the watchdog returns to its power-on state, NOWAYOUT
// or not (WatchdogDevice.OnVmReset).
//
// A stop of the device's rings (vhost-user GET_VRING_BASE) suspends the device (spec §6.9a). QEMU
// stops the rings of a VM that stops before it sends STOP: do_vm_stop sets the run state, stops
// the devices (our GET_VRING_BASE, answered before QEMU goes on) and only then emits STOP. So the
// suspend observer, which runs before the back end answers, counts the STOP events seen so far
// and asks query-status. The monitor dispatches our command only after the one that stopped the
// VM has finished, and a monitor sends events and replies in order, so by the time the reply
// arrives a VM stop has shown itself (a new STOP, or running = false). Running with no new STOP is
// a driver reset: the device is reset at once, instead of waiting for the rings to restart. When
// the monitor cannot say (not connected, timeout), the back end's restart rule decides later.
//
// Callbacks come from the monitor's event task (run state, reset) and from the back end's session
// thread (suspend); the device's own lock orders them. No lock here: the fields are written once.
internal sealed class QmpDeviceBinding : IDisposable
{
    private readonly QmpVmControl _vm;
    private readonly WatchdogDevice _device;
    private readonly ILogger _logger;
    private readonly CancellationToken _stop;
    private readonly Action<bool> _onRunState;
    private readonly Action _onReset;
    private int _disposed;
    private Task _lastDecision = Task.CompletedTask;

    internal QmpDeviceBinding(QmpVmControl vm, WatchdogDevice device, ILogger logger, CancellationToken stop)
    {
        _vm = vm;
        _device = device;
        _logger = logger;
        _stop = stop;
        _onRunState = OnRunState;
        _onReset = OnReset;
        vm.RunStateChanged += _onRunState;
        vm.VmReset += _onReset;
        device.SetSuspendObserver(OnSuspended);
        if (vm.VmRunning is bool running)
        {
            OnRunState(running);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _vm.RunStateChanged -= _onRunState;
        _vm.VmReset -= _onReset;
        _device.SetSuspendObserver(null);
    }

    private void OnRunState(bool running)
    {
        if (running)
        {
            _device.Resume();
        }
        else
        {
            _device.Pause();
        }
    }

    private void OnReset() => _device.OnVmReset(_device.GetStatus().BootReason);

    // On the vhost-user loop thread (every back end's), before it answers GET_VRING_BASE: must not block.
    private void OnSuspended(WatchdogDevice device)
    {
        long stopsBefore = _vm.StopEvents;
        Volatile.Write(ref _lastDecision, Task.Run(() => DecideAsync(stopsBefore)));
    }

    // The decision about the latest suspension (for tests: completes once it has been made).
    internal Task LastDecision => Volatile.Read(ref _lastDecision);

    private async Task DecideAsync(long stopsBefore)
    {
        bool? running;
        try
        {
            running = await _vm.QueryRunningAsync(_stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        if (running == true && _vm.StopEvents == stopsBefore && Volatile.Read(ref _disposed) == 0 && _device.IsSuspended)
        {
            QmpLog.RingStopWasDriverReset(_logger, _device.Id);
            _device.Reset();
        }
    }
}
