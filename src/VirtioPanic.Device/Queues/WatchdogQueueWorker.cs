using System.Buffers.Binary;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device;

// watchdogq (queue 0): baseline heartbeats and, with VIRTIO_WDT_F_CONTROL, control requests
// (spec/virtio-watchdog.md §6.2, §6.3). Every chain is completed in the pass that pops it.
internal sealed class WatchdogQueueWorker : QueueWorker
{
    private readonly WatchdogDevice _device;
    private bool _control;
    private bool _pretimeout;
    private bool _halted;

    internal WatchdogQueueWorker(WatchdogDevice device)
        : base(WatchdogProtocol.WatchdogQueue)
    {
        _device = device;
    }

    protected override void OnStart()
    {
        WatchdogFeatures features = _device.NegotiatedDeviceFeatures;
        _control = (features & WatchdogFeatures.Control) != 0;
        _pretimeout = (features & WatchdogFeatures.Pretimeout) != 0;
        _halted = false;
    }

    protected override bool Process(Virtqueue queue, IVirtioDeviceContext context, int budget)
    {
        if (_halted)
        {
            return false;
        }

        int handled = 0;
        do
        {
            queue.DisableNotification();
            while (true)
            {
                if (handled == budget)
                {
                    Flush(queue, context);
                    return true;
                }

                VirtqueueStatus status = queue.TryPopChain(out DescriptorChain chain);
                if (status == VirtqueueStatus.Empty)
                {
                    break;
                }

                if (status != VirtqueueStatus.Ok)
                {
                    // WDT-DEV-32: the engine stopped the queue; nothing more is popped from it.
                    _halted = true;
                    Flush(queue, context);
                    _device.ReportRingError(QueueIndex, status);
                    return false;
                }

                handled++;
                if (WatchdogDevice.IsOversized(chain, out ulong length))
                {
                    // WDT-DEV-37: neither written nor returned; the queue stops with NEEDS_RESET.
                    _halted = true;
                    Flush(queue, context);
                    _device.ReportOversizedChain(QueueIndex, length);
                    return false;
                }

                if (chain.Readable.IsEmpty)
                {
                    Heartbeat(queue, chain);
                }
                else if (_control)
                {
                    Control(queue, chain);
                }
                else
                {
                    // WDT-DEV-6: reject exactly as Cloud Hypervisor does: neither write nor return
                    // the chain, set DEVICE_NEEDS_RESET, and stop processing this queue.
                    _halted = true;
                    Flush(queue, context);
                    _device.ReportHeartbeatRejected();
                    return false;
                }
            }

            Flush(queue, context);
        }
        while (queue.EnableNotification());

        return false;
    }

    private void Heartbeat(Virtqueue queue, DescriptorChain chain)
    {
        // WDT-DEV-4: byte 1 at offset 0 of the first buffer; used length = that buffer's length.
        GuestMemorySlice first = chain.Writable[0];
        first.Slice(0, 1).Span[0] = 1;
        queue.AddUsed(chain.Token, first.Length);
        _device.Timer.Heartbeat();
    }

    private void Control(Virtqueue queue, DescriptorChain chain)
    {
        if (chain.WritableLength < WatchdogProtocol.ControlResponseSize)
        {
            // WDT-DEV-15: nothing executed, used length 0.
            queue.AddUsed(chain.Token, 0);
            _device.ReportProtocolError(QueueIndex, WatchdogProtocolError.MalformedControl, "control response shorter than 16 bytes");
            return;
        }

        ControlResponse response;
        if (chain.ReadableLength < WatchdogProtocol.ControlRequestSize)
        {
            // WDT-DEV-11: answer INVALID, change nothing.
            response = _device.Timer.Control(WatchdogProtocol.CommandGetStatus, 0, _pretimeout) with { Status = WatchdogProtocol.StatusInvalid };
            _device.ReportProtocolError(QueueIndex, WatchdogProtocolError.MalformedControl, "control request shorter than 16 bytes");
        }
        else
        {
            Span<byte> request = stackalloc byte[WatchdogProtocol.ControlRequestSize];
            chain.CopyFromReadable(request);
            ushort command = BinaryPrimitives.ReadUInt16LittleEndian(request);
            uint value = BinaryPrimitives.ReadUInt32LittleEndian(request[4..]);
            response = _device.Timer.Control(command, value, _pretimeout);
        }

        Span<byte> encoded = stackalloc byte[WatchdogProtocol.ControlResponseSize];
        BinaryPrimitives.WriteUInt16LittleEndian(encoded, response.Status);
        BinaryPrimitives.WriteUInt16LittleEndian(encoded[2..], response.Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(encoded[4..], response.TimeoutMs);
        BinaryPrimitives.WriteUInt32LittleEndian(encoded[8..], response.PretimeoutMs);
        BinaryPrimitives.WriteUInt32LittleEndian(encoded[12..], response.TimeLeftMs);
        chain.CopyToWritable(encoded);
        queue.AddUsed(chain.Token, WatchdogProtocol.ControlResponseSize);
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
