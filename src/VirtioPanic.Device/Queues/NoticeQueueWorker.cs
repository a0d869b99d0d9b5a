using System.Buffers.Binary;
using VirtioPanic.Device.Protocol;
using VirtioPanic.Device.Timer;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Queues;

// noticeq (queue 2, device to driver): delivers pending notices into buffers the driver posted:
// the pretimeout notice (spec §6.4 "Pretimeout notices") and VCPU_STALL notices (§6.12), oldest
// first by NoticeOrder (WDT-DEV-44). Buffers are popped only when there is a notice to deliver
// (WantsChain), so the device never holds any. The timer and the stall monitor kick this worker
// directly (WatchdogDevice's listeners), never through the guest's Notify entry point.
internal sealed class NoticeQueueWorker : QueueWorker
{
    private readonly WatchdogTimer _timer;
    private readonly VcpuStallMonitor? _vcpus;

    // The notice WantsChain found, delivered by the Handle that follows on the same thread.
    private PendingNotice _notice;
    private VcpuNotice _vcpuNotice;
    private bool _pending;
    private bool _isVcpu;

    internal NoticeQueueWorker(IQueueWorkerHost host, WatchdogTimer timer, VcpuStallMonitor? vcpus)
        : base(WatchdogProtocol.NoticeQueue, host)
    {
        _timer = timer;
        _vcpus = vcpus;
    }

    protected override bool WantsChain()
    {
        bool pretimeout = _timer.TryGetPendingNotice(out _notice);
        bool vcpu = _vcpus is not null && _vcpus.TryPeekNotice(out _vcpuNotice);
        _isVcpu = vcpu && (!pretimeout || _vcpuNotice.Order < _notice.Order);
        _pending = pretimeout || vcpu;
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
        if (_isVcpu)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(encoded[WatchdogProtocol.NoticeType..], WatchdogProtocol.NoticeTypeVcpuStall);
            BinaryPrimitives.WriteUInt16LittleEndian(encoded[WatchdogProtocol.NoticeVcpu..], (ushort)_vcpuNotice.Vcpu);
            BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.NoticeStalledMs..], WatchdogTimer.ToMilliseconds(_vcpuNotice.StalledFor));
            BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.NoticeTimeoutMs..], WatchdogTimer.ToMilliseconds(_vcpuNotice.Timeout));
            BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.NoticeStage2Ms..], WatchdogTimer.ToMilliseconds(_vcpuNotice.SecondStageLeft));
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(encoded[WatchdogProtocol.NoticeType..], WatchdogProtocol.NoticeTypePretimeout);
            BinaryPrimitives.WriteUInt16LittleEndian(encoded[WatchdogProtocol.NoticeReserved..], 0);
            BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.NoticeTimeLeftMs..], WatchdogTimer.ToMilliseconds(_notice.TimeLeft));
            BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.NoticeTimeoutMs..], WatchdogTimer.ToMilliseconds(_notice.Timeout));
            BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.NoticePretimeoutMs..], WatchdogTimer.ToMilliseconds(_notice.Pretimeout));
        }

        chain.CopyToWritable(encoded);
        queue.AddUsed(chain.Token, WatchdogProtocol.NoticeSize);
        if (_isVcpu)
        {
            _vcpus!.MarkNoticeDelivered(_vcpuNotice.Vcpu, _vcpuNotice.Order);
        }
        else
        {
            _timer.MarkNoticeDelivered(_notice.Countdown);
        }

        Flush(queue, context);
        return true;
    }

    // WDT-DEV-18: with a notice still pending and the ring empty, it waits for the driver's next
    // buffer, which brings us back; with nothing pending there is nothing to look again for.
    protected override bool Rearm(Virtqueue queue) => queue.EnableNotification() && _pending;
}
