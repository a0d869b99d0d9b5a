using System.Threading.Channels;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

// Design: one device's event pump, the only reader of the device's channel. It orders the
// device's events: each is handled under the device's gate (DeviceEntry.Gate), one at a time, in
// the order the device published them, whether the pump or the inline path handles it.
//
//   pump    an async loop on pool threads: wait for the channel, then for each event peek, take the
//           gate, read, handle, release. It peeks before it takes the gate, so an idle pump never
//           holds the gate (the inline path then always finds it free).
//   inline  (InlinePanicHandling) the device's inline observer for panic_events reports. The device
//           asks it inside the guest's write, under the transport's register lock and the device's
//           event lock, and only when none of its events is unread (WatchdogEventSink.TryTakeInline).
//           It takes the report when the gate is free at once, keeping the gate for it, or declines
//           it, and only a declined report goes to the channel: each report has one consumer,
//           decided before it is published, and a taken one cannot overtake an earlier event. The
//           taken report is handled in the write's post-access step (IVirtioDevice.AfterConfigWrite),
//           on the vCPU, after the register lock is released and before the write completes.
//           A vCPU never waits for the gate: while another event is handled, reports are declined.
//
// Stopping: no new inline takes, the loop drains what is queued, then the gate is taken once more,
// which waits for a report taken inline to be handled.
internal sealed class DevicePump : IDisposable
{
    private readonly DeviceEntry _entry;
    private readonly Func<DeviceEntry, WatchdogEvent, Task> _handle;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    // handle: runs under the gate and never throws (the service catches and logs).
    internal DevicePump(DeviceEntry entry, Func<DeviceEntry, WatchdogEvent, Task> handle)
    {
        _entry = entry;
        _handle = handle;
    }

    // Starts the loop once (a stopped pump stays stopped) and, with inlinePanicHandling, registers
    // the inline observer. Under the service's lifecycle lock.
    internal void Start(bool inlinePanicHandling)
    {
        _loop ??= Task.Run(() => RunAsync(_stop.Token));
        if (inlinePanicHandling)
        {
            _entry.Device.SetInlineReportObserver(TryTakeInline);
        }
    }

    // No new inline takes; the loop handles what is queued and ends. Awaiting the gate afterwards
    // (the caller does) waits for a taken report still being handled.
    internal async Task StopAsync()
    {
        _entry.Device.SetInlineReportObserver(null);
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is Task loop)
        {
            await loop.ConfigureAwait(false);
        }
    }

    // The service's Dispose: stop without waiting.
    internal void Cancel()
    {
        _entry.Device.SetInlineReportObserver(null);
        _stop.Cancel();
    }

    // The service's Dispose, after Cancel.
    public void Dispose() => _stop.Dispose();

    // Tests and benchmarks: completes once every event the device has reported so far is handled
    // and nothing holds the device's gate (condition-based, no quiet period).
    internal async Task WhenIdleAsync()
    {
        ChannelReader<WatchdogEvent> reader = _entry.Device.Events;
        while (true)
        {
            bool idle;
            await _entry.Gate.WaitAsync().ConfigureAwait(false);
            try
            {
                idle = !reader.TryPeek(out _);
            }
            finally
            {
                _entry.Gate.Release();
            }

            if (idle)
            {
                return;
            }

            // The loop has work queued and needs the gate: let it run.
            await Task.Delay(1).ConfigureAwait(false);
        }
    }

    private async Task RunAsync(CancellationToken stop)
    {
        ChannelReader<WatchdogEvent> reader = _entry.Device.Events;
        try
        {
            while (await reader.WaitToReadAsync(stop).ConfigureAwait(false))
            {
                while (await TryHandleNextAsync(reader).ConfigureAwait(false))
                {
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Stopping or detaching: fall through and drain.
        }

        // Nothing already queued is dropped: handle what the device reported before the stop.
        while (await TryHandleNextAsync(reader).ConfigureAwait(false))
        {
        }
    }

    private async Task<bool> TryHandleNextAsync(ChannelReader<WatchdogEvent> reader)
    {
        if (!reader.TryPeek(out _))
        {
            return false;
        }

        await _entry.Gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!reader.TryRead(out WatchdogEvent? evt))
            {
                return false;
            }

            await _handle(_entry, evt).ConfigureAwait(false);
            return true;
        }
        finally
        {
            _entry.Gate.Release();
        }
    }

    // The inline observer (see Design): must not block. Returns the handler to run in the write's
    // post-access step, or null to decline.
    private Action? TryTakeInline(GuestReportEvent report)
    {
        if (_stop.IsCancellationRequested || !_entry.Gate.Wait(0))
        {
            return null;
        }

        // Runs synchronously up to the first VM-control call that does not complete at once.
        return () => _ = HandleTakenAsync(report);
    }

    // Runs with the gate held (taken by TryTakeInline) and releases it. A taken report is in no
    // channel, so it is handled even while the device is being detached (the detach waits for the gate).
    private async Task HandleTakenAsync(WatchdogEvent evt)
    {
        try
        {
            await _handle(_entry, evt).ConfigureAwait(false);
        }
        finally
        {
            _entry.Gate.Release();
        }
    }
}
