using VirtioPanic.Device.Protocol;
using VirtioPanic.Device.Timer;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Queues;

// watchdogq (queue 0): baseline heartbeats and, with VIRTIO_WDT_F_CONTROL, control requests
// (spec/virtio-watchdog.md §6.2 "Heartbeats", §6.3 "Control requests"). Every chain is completed
// in the pass that pops it. The wire is decoded and encoded here (WatchdogControlWire); the timer
// gets a WatchdogCommand and answers with a WatchdogControlOutcome.
internal sealed class WatchdogQueueWorker : QueueWorker
{
    private readonly WatchdogTimer _timer;
    private bool _control;
    private bool _pretimeout;

    internal WatchdogQueueWorker(IQueueWorkerHost host, WatchdogTimer timer)
        : base(WatchdogProtocol.WatchdogQueue, host)
    {
        _timer = timer;
    }

    protected override void OnStart()
    {
        WatchdogFeatures features = Host.NegotiatedFeatures;
        _control = (features & WatchdogFeatures.Control) != 0;
        _pretimeout = (features & WatchdogFeatures.Pretimeout) != 0;
    }

    protected override bool Handle(Virtqueue queue, IVirtioDeviceContext context, DescriptorChain chain)
    {
        if (chain.Readable.IsEmpty)
        {
            Heartbeat(queue, chain);
            return true;
        }

        if (_control)
        {
            Control(queue, chain);
            return true;
        }

        // WDT-DEV-6: reject exactly as Cloud Hypervisor does: neither write nor return the chain,
        // set DEVICE_NEEDS_RESET, and stop processing this queue.
        Halt(queue, context, WatchdogProtocolError.HeartbeatRejected, "first buffer of a watchdogq chain is device-readable and CONTROL is not negotiated");
        return false;
    }

    private void Heartbeat(Virtqueue queue, DescriptorChain chain)
    {
        // WDT-DEV-4: byte 1 at offset 0 of the first buffer; used length = that buffer's length.
        GuestMemorySlice first = chain.Writable[0];
        first.Slice(WatchdogProtocol.HeartbeatAckOffset, 1).Span[0] = WatchdogProtocol.HeartbeatAck;
        queue.AddUsed(chain.Token, first.Length);
        _timer.Heartbeat();
    }

    private void Control(Virtqueue queue, DescriptorChain chain)
    {
        if (chain.WritableLength < WatchdogProtocol.ControlResponseSize)
        {
            // WDT-DEV-15: nothing executed, used length 0.
            queue.AddUsed(chain.Token, 0);
            Host.OnProtocolError(QueueIndex, WatchdogProtocolError.MalformedControl, "control response shorter than 16 bytes");
            return;
        }

        WatchdogControlOutcome outcome;
        ushort status;
        if (chain.ReadableLength < WatchdogProtocol.ControlRequestSize)
        {
            // WDT-DEV-11: answer INVALID, change nothing (the state comes from a GET_STATUS).
            outcome = _timer.Control(WatchdogCommand.GetStatus, TimeSpan.Zero, _pretimeout);
            status = WatchdogProtocol.StatusInvalid;
            Host.OnProtocolError(QueueIndex, WatchdogProtocolError.MalformedControl, "control request shorter than 16 bytes");
        }
        else
        {
            // Copy, then decode: the guest may rewrite the request meanwhile.
            Span<byte> request = stackalloc byte[WatchdogProtocol.ControlRequestSize];
            chain.CopyFromReadable(request);
            (ushort wire, uint valueMs) = WatchdogControlWire.DecodeRequest(request);
            if (WatchdogControlWire.TryDecodeCommand(wire, out WatchdogCommand command))
            {
                outcome = _timer.Control(command, TimeSpan.FromMilliseconds(valueMs), _pretimeout);
                status = WatchdogControlWire.EncodeStatus(outcome.Result);
            }
            else
            {
                // An unknown command: UNSUPPORTED, nothing changed, the current state reported.
                outcome = _timer.Control(WatchdogCommand.GetStatus, TimeSpan.Zero, _pretimeout);
                status = WatchdogProtocol.StatusUnsupported;
            }
        }

        Span<byte> encoded = stackalloc byte[WatchdogProtocol.ControlResponseSize];
        WatchdogControlWire.EncodeResponse(outcome, status, encoded);
        chain.CopyToWritable(encoded);
        queue.AddUsed(chain.Token, WatchdogProtocol.ControlResponseSize);
    }
}
