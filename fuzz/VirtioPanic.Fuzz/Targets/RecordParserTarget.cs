using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Device.Protocol;
using VirtioPanic.Device;

namespace VirtioPanic.Fuzz.Targets;

// The event-record parser (RecordParser.Parse) on the device's private copy of a record, then,
// for a record it accepts, the device's own conversion into a typed event (ReportRecord: codes,
// UTF-8 message and log tail), exactly as EventQueueWorker.Consume does. Neither may throw for
// any copy; an accepted header must fit the copy and the readable length.
//
// Input:
//   u8  flags   bit 0: VIRTIO_WDT_F_LOG_TAIL negotiated; bit 1: readable length from the next
//               u32 (the chain may claim more or less than the copy holds), else the copy's length;
//               bits 2-3: the event source
//   [u32 readable length]
//   the copy (cut to the device's RecordMax like Consume does)
internal sealed class RecordParserTarget : IFuzzTarget
{
    private readonly WatchdogDevice _device = new(new WatchdogDeviceOptions { DeviceId = "fuzz" }, new FakeTimeProvider());

    public void Run(ReadOnlySpan<byte> input)
    {
        var reader = new FuzzInput(input);
        byte flags = reader.U8();
        bool logTail = (flags & 1) != 0;
        uint readableLength = (flags & 2) != 0 ? reader.U32() : 0;
        ReadOnlySpan<byte> copy = reader.Rest();
        if ((flags & 2) == 0)
        {
            readableLength = (uint)copy.Length;
        }

        if (copy.Length > WatchdogProtocol.RecordMax)
        {
            copy = copy[..WatchdogProtocol.RecordMax];
        }

        RecordError error = RecordParser.Parse(copy, readableLength, logTail, out RecordHeader header);
        if (error != RecordError.None)
        {
            _ = RecordParser.Describe(error);
            return;
        }

        uint total = (uint)WatchdogProtocol.RecordHeaderSize + header.MessageLength + header.LogTailLength;
        Check.That(total <= readableLength && total <= (uint)copy.Length, "an accepted record runs past the copy or the readable part");
        Check.That(header.CodeCount <= WatchdogProtocol.CodesMax, "an accepted record has too many codes");
        Check.That(logTail || header.LogTailLength == 0, "an accepted record has a log tail that was not negotiated");

        var source = (WatchdogEventSource)((flags >> 2) % 3);
        _ = _device.ReportRecord(header, copy, source);
        while (_device.Events.TryRead(out _))
        {
        }
    }
}
