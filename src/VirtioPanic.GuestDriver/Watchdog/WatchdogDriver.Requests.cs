using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.GuestDriver.Virtio;

namespace VirtioPanic.GuestDriver.Watchdog;

// watchdogq requests (control requests and heartbeats) and noticeq. A request is one chain: the
// driver waits for the device to return it (WDT-DRV-17: the returned buffer is the
// acknowledgement), sleeping with interrupts, at most RequestTimeout of machine time. A request
// that times out leaves its buffers with the device, so the driver stops using watchdogq.
public sealed partial class WatchdogDriver
{
    private WatchdogResult Control(ushort command, uint valueMs, out WatchdogState state)
    {
        state = default;
        if (_broken)
        {
            return WatchdogResult.DeviceError;
        }

        // WDT-DRV-5: 16 readable bytes with the reserved fields zero, then 16 writable ones.
        Span<byte> request = stackalloc byte[WatchdogWire.ControlSize];
        request.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(request, command);
        BinaryPrimitives.WriteUInt32LittleEndian(request[4..], valueMs);
        Memory.TryWrite(_request, request);
        Memory.TryWrite(_response, stackalloc byte[WatchdogWire.ControlSize]);
        if (!Submit([new DriverBuffer(_request, WatchdogWire.ControlSize, false), new DriverBuffer(_response, WatchdogWire.ControlSize, true)], out uint length))
        {
            return WatchdogResult.DeviceError;
        }

        if (length < WatchdogWire.ControlSize)
        {
            return WatchdogResult.DeviceError;
        }

        Span<byte> response = stackalloc byte[WatchdogWire.ControlSize];
        Memory.TryRead(_response, response);
        state = new WatchdogState(
            (WatchdogStateFlags)BinaryPrimitives.ReadUInt16LittleEndian(response[2..]),
            Milliseconds(BinaryPrimitives.ReadUInt32LittleEndian(response[4..])),
            Milliseconds(BinaryPrimitives.ReadUInt32LittleEndian(response[8..])),
            Milliseconds(BinaryPrimitives.ReadUInt32LittleEndian(response[12..])));
        return BinaryPrimitives.ReadUInt16LittleEndian(response) switch
        {
            0 => WatchdogResult.Ok,
            1 => WatchdogResult.NotSupported,
            2 => WatchdogResult.InvalidArgument,
            3 => WatchdogResult.Busy,
            _ => WatchdogResult.DeviceError,
        };
    }

    // WDT-DRV-2: one device-writable buffer whose first byte starts as 0; the device must make it 1.
    private WatchdogResult Heartbeat()
    {
        if (_broken)
        {
            return WatchdogResult.DeviceError;
        }

        Memory.TryWrite(_heartbeat, stackalloc byte[WatchdogWire.HeartbeatSize]);
        if (!Submit([new DriverBuffer(_heartbeat, WatchdogWire.HeartbeatSize, true)], out _))
        {
            return WatchdogResult.DeviceError;
        }

        Interlocked.Increment(ref _heartbeats);
        Span<byte> first = stackalloc byte[1];
        Memory.TryRead(_heartbeat, first);
        if (first[0] != 1)
        {
            Interlocked.Increment(ref _heartbeatFaults);
            return WatchdogResult.DeviceError;
        }

        return WatchdogResult.Ok;
    }

    private bool Submit(ReadOnlySpan<DriverBuffer> chain, out uint length)
    {
        length = 0;
        GuestVirtqueue queue = _device.Queue(WatchdogWire.WatchdogQueue);
        if (!queue.TryAdd(chain))
        {
            _broken = true;
            return false;
        }

        queue.Kick();
        if (!queue.WaitForUsed(_options.RequestTimeout, out UsedBuffer used, out _))
        {
            _broken = true;
            return false;
        }

        length = used.Length;
        return true;
    }

    // WDT-DRV-7: notice buffers are device-writable only and 16 bytes.
    private void PostNoticeBuffers()
    {
        GuestVirtqueue queue = _device.Queue(WatchdogWire.NoticeQueue);
        for (int i = 0; i < _options.NoticeBuffers; i++)
        {
            ulong buffer = _kernel.AllocateBuffer(WatchdogWire.NoticeSize);
            queue.TryAdd([new DriverBuffer(buffer, WatchdogWire.NoticeSize, true)], buffer);
        }

        queue.Ring.Publish();
        queue.Callback = OnNotice;
    }

    // noticeq interrupt: hand each notice to the pretimeout governor (or, for VCPU_STALL, to the stall handling) and post the buffer again.
    private void OnNotice(GuestVirtqueue queue)
    {
        bool reposted = false;
        Span<byte> notice = stackalloc byte[WatchdogWire.NoticeSize];
        Span<byte> zero = stackalloc byte[WatchdogWire.NoticeSize];
        while (queue.TryGetUsed(out UsedBuffer used, out object? token))
        {
            ulong buffer = (ulong)token!;
            Memory.TryRead(buffer, notice);
            if (used.Length >= WatchdogWire.NoticeSize && BinaryPrimitives.ReadUInt16LittleEndian(notice) == WatchdogWire.NoticeTypePretimeout)
            {
                var received = new PretimeoutNotice(
                    Milliseconds(BinaryPrimitives.ReadUInt32LittleEndian(notice[4..])),
                    Milliseconds(BinaryPrimitives.ReadUInt32LittleEndian(notice[8..])),
                    Milliseconds(BinaryPrimitives.ReadUInt32LittleEndian(notice[12..])));
                _notices.Add(received);
                PretimeoutGovernor?.Invoke(received);
            }
            else if (used.Length >= WatchdogWire.NoticeSize && BinaryPrimitives.ReadUInt16LittleEndian(notice) == WatchdogWire.NoticeTypeVcpuStall)
            {
                OnVcpuStallNotice(notice);
            }

            Memory.TryWrite(buffer, zero);
            reposted |= queue.TryAdd([new DriverBuffer(buffer, WatchdogWire.NoticeSize, true)], buffer);
        }

        if (reposted)
        {
            queue.Kick();
        }
    }
}
