using System.Buffers.Binary;
using VirtioPanic.Device.Protocol;
using VirtioPanic.Device.Timer;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Queues;

// noticeq (queue 2, device to driver): delivers a pending pretimeout notice into a buffer the
// driver posted (spec §6.4 "Pretimeout notices"). Buffers are popped only when there is a notice
// to deliver (WantsChain), so the device never holds any. The timer kicks this worker directly
// (WatchdogDevice.TimerListener.OnNoticePending), never through the guest's Notify entry point.
internal sealed class NoticeQueueWorker : QueueWorker
{
    private readonly WatchdogTimer _timer;

    // The notice WantsChain found, delivered by the Handle that follows on the same thread.
    private PendingNotice _notice;
    private bool _pending;

    internal NoticeQueueWorker(IQueueWorkerHost host, WatchdogTimer timer)
        : base(WatchdogProtocol.NoticeQueue, host)
    {
        _timer = timer;
    }

    protected override bool WantsChain()
    {
        _pending = _timer.TryGetPendingNotice(out _notice);
        return _pending;
    }

    protected override bool Handle(Virtqueue queue, IVirtioDeviceContext context, DescriptorChain chain)
    {
        if (!chain.Readable.IsEmpty || chain.WritableLength < WatchdogProtocol.NoticeSize)
        {
            // WDT-DEV-19: return it unused; the notice stays pending.
            queue.AddUsed(chain.Token, 0);
            Flush(queue, context);
            Host.OnProtocolError(QueueIndex, WatchdogProtocolError.MalformedNoticeBuffer, "notice buffer shorter than 16 bytes or device-readable");
            return true;
        }

        Span<byte> encoded = stackalloc byte[WatchdogProtocol.NoticeSize];
        BinaryPrimitives.WriteUInt16LittleEndian(encoded[WatchdogProtocol.NoticeType..], WatchdogProtocol.NoticeTypePretimeout);
        BinaryPrimitives.WriteUInt16LittleEndian(encoded[WatchdogProtocol.NoticeReserved..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.NoticeTimeLeftMs..], WatchdogTimer.ToMilliseconds(_notice.TimeLeft));
        BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.NoticeTimeoutMs..], WatchdogTimer.ToMilliseconds(_notice.Timeout));
        BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.NoticePretimeoutMs..], WatchdogTimer.ToMilliseconds(_notice.Pretimeout));
        chain.CopyToWritable(encoded);
        queue.AddUsed(chain.Token, WatchdogProtocol.NoticeSize);
        _timer.MarkNoticeDelivered(_notice.Countdown);
        Flush(queue, context);
        return true;
    }

    // WDT-DEV-18: with the notice still pending and the ring empty, it waits for the driver's next
    // buffer, which brings us back; with nothing pending there is nothing to look again for.
    protected override bool Rearm(Virtqueue queue) => queue.EnableNotification() && _pending;
}
