using System.Buffers.Binary;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device;

// noticeq (queue 2, device to driver): delivers a pending pretimeout notice into a buffer the
// driver posted (spec §6.4). Buffers are popped only when there is a notice to deliver, so the
// device never holds any.
internal sealed class NoticeQueueWorker : QueueWorker
{
    private readonly WatchdogDevice _device;
    private bool _halted;

    internal NoticeQueueWorker(WatchdogDevice device)
        : base(WatchdogProtocol.NoticeQueue)
    {
        _device = device;
    }

    protected override void OnStart() => _halted = false;

    protected override bool Process(Virtqueue queue, IVirtioDeviceContext context, int budget)
    {
        if (_halted)
        {
            return false;
        }

        int handled = 0;
        Span<byte> encoded = stackalloc byte[WatchdogProtocol.NoticeSize];
        while (true)
        {
            queue.DisableNotification();
            if (!_device.Timer.TryGetPendingNotice(out PendingNotice notice))
            {
                queue.EnableNotification();
                return false;
            }

            if (handled == budget)
            {
                return true;
            }

            VirtqueueStatus status = queue.TryPopChain(out DescriptorChain chain);
            if (status == VirtqueueStatus.Empty)
            {
                // WDT-DEV-18: keep it pending; the driver's next buffer brings us back.
                if (queue.EnableNotification())
                {
                    continue;
                }

                return false;
            }

            if (status != VirtqueueStatus.Ok)
            {
                _halted = true;
                _device.ReportRingError(QueueIndex, status);
                return false;
            }

            handled++;
            if (WatchdogDevice.IsOversized(chain, out ulong length))
            {
                // WDT-DEV-37: a ring error; the notice stays pending.
                _halted = true;
                Flush(queue, context);
                _device.ReportOversizedChain(QueueIndex, length);
                return false;
            }

            if (!chain.Readable.IsEmpty || chain.WritableLength < WatchdogProtocol.NoticeSize)
            {
                // WDT-DEV-19: return it unused; the notice stays pending.
                queue.AddUsed(chain.Token, 0);
                Flush(queue, context);
                _device.ReportProtocolError(QueueIndex, WatchdogProtocolError.MalformedNoticeBuffer, "notice buffer shorter than 16 bytes or device-readable");
                continue;
            }

            BinaryPrimitives.WriteUInt16LittleEndian(encoded, WatchdogProtocol.NoticeTypePretimeout);
            BinaryPrimitives.WriteUInt16LittleEndian(encoded[2..], 0);
            BinaryPrimitives.WriteUInt32LittleEndian(encoded[4..], WatchdogTimer.ToMilliseconds(notice.TimeLeft));
            BinaryPrimitives.WriteUInt32LittleEndian(encoded[8..], WatchdogTimer.ToMilliseconds(notice.Timeout));
            BinaryPrimitives.WriteUInt32LittleEndian(encoded[12..], WatchdogTimer.ToMilliseconds(notice.Pretimeout));
            chain.CopyToWritable(encoded);
            queue.AddUsed(chain.Token, WatchdogProtocol.NoticeSize);
            _device.Timer.MarkNoticeDelivered(notice.Countdown);
            Flush(queue, context);
        }
    }

    protected override void OnFault(IVirtioDeviceContext context, Exception exception) => _device.ReportWorkerFault(QueueIndex, exception);

    private void Flush(Virtqueue queue, IVirtioDeviceContext context)
    {
        if (queue.FlushUsed())
        {
            context.SignalUsedBuffers(QueueIndex);
        }
    }
}
