using VirtioPanic.Device.Protocol;
using VirtioPanic.Device.Queues;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device;

// The device's side of its three queue workers: which worker a kick goes to, (re)starting them,
// and the narrow interface (IQueueWorkerHost) through which they report back.
public sealed partial class WatchdogDevice
{
    /// <inheritdoc />
    public void Notify(int queueIndex)
    {
        QueueWorker? worker = Worker(queueIndex);
        if (worker is not null)
        {
            Kick(worker);
        }
    }

    // The guest's kick (Notify) and the timer's pending notice (TimerListener.OnNoticePending) both
    // end here: a stopped worker is restarted if its queue is wanted and ready, then kicked.
    private void Kick(QueueWorker worker)
    {
        // WDT-DEV-22: a queue whose feature was not negotiated is never touched (checked without a
        // lock, so kicking such a queue costs a guest nothing but its own time).
        if (!worker.IsStarted && (!IsWanted(worker.QueueIndex, _negotiated) || !TryRestartWorker(worker.QueueIndex)))
        {
            return;
        }

        worker.Kick();
    }

    private static bool IsWanted(int queueIndex, WatchdogFeatures negotiated) => queueIndex switch
    {
        WatchdogProtocol.EventQueue => (negotiated & WatchdogFeatures.Events) != 0,
        WatchdogProtocol.NoticeQueue => (negotiated & (WatchdogFeatures.Pretimeout | WatchdogFeatures.VcpuStall)) != 0,
        _ => true,
    };

    private QueueWorker? Worker(int queueIndex) => queueIndex switch
    {
        WatchdogProtocol.WatchdogQueue => _watchdogWorker,
        WatchdogProtocol.EventQueue => _eventWorker,
        WatchdogProtocol.NoticeQueue => _noticeWorker,
        _ => null,
    };

    // After a per-queue reset the transport re-enables the queue and the next kick restarts it.
    private bool TryRestartWorker(int queueIndex)
    {
        lock (_lock)
        {
            if (_context is null || _disposed)
            {
                return false;
            }

            StartWorkerUnsynchronized(queueIndex);
            return Worker(queueIndex)!.IsStarted;
        }
    }

    private void StartWorkerUnsynchronized(int queueIndex)
    {
        IVirtioDeviceContext context = _context!;
        QueueWorker worker = Worker(queueIndex)!;
        if (worker.IsStarted)
        {
            return;
        }

        Virtqueue queue = context.GetQueue(queueIndex);
        bool wanted = IsWanted(queueIndex, _negotiated);
        if (queueIndex == WatchdogProtocol.NoticeQueue)
        {
            _timer.EnableNotices(wanted && queue.IsReady);
        }

        if (!wanted || !queue.IsReady)
        {
            return;
        }

        if (queueIndex == WatchdogProtocol.EventQueue && _restoredHeld is not null)
        {
            int lost = _eventWorker.RestoreHeld(context.Memory, _restoredHeld);
            _restoredHeld = null;
            for (int i = 0; i < lost; i++)
            {
                ReportProtocolError(queueIndex, WatchdogProtocolError.LostRecordBuffer, "restored record buffer outside guest memory");
            }
        }

        worker.Start(context, queue);
    }

    // A worker stopped its queue (ring error, oversized chain, rejected heartbeat): the driver is
    // told with DEVICE_NEEDS_RESET (spec §6.9 "Ring errors, full queues and bounded work") and the
    // host gets the protocol-error event.
    private void ReportQueueStopped(int queueIndex, WatchdogProtocolError error, string detail)
    {
        SignalNeedsReset();
        WatchdogDeviceMetrics.QueueErrors.Add(1, _metricTag, WatchdogDeviceMetrics.QueueTag(queueIndex), WatchdogDeviceMetrics.KindTag(error));
        ReportProtocolError(queueIndex, error, detail);
    }

    private sealed class QueueHost : IQueueWorkerHost
    {
        private readonly WatchdogDevice _device;

        internal QueueHost(WatchdogDevice device) => _device = device;

        public WatchdogFeatures NegotiatedFeatures => _device._negotiated;

        public void OnQueueStopped(int queueIndex, WatchdogProtocolError error, string detail) => _device.ReportQueueStopped(queueIndex, error, detail);

        public void OnProtocolError(int queueIndex, WatchdogProtocolError error, string detail, ushort? declaredType = null) =>
            _device.ReportProtocolError(queueIndex, error, detail, declaredType);

        public long OnRecord(in RecordHeader header, ReadOnlySpan<byte> copy, WatchdogEventSource source) => _device.ReportRecord(header, copy, source);

        public void OnWorkerFault(int queueIndex, Exception exception) => _device.ReportWorkerFault(queueIndex, exception);
    }
}
