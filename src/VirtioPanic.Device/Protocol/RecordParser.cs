using System.Buffers.Binary;

namespace VirtioPanic.Device.Protocol;

// Validates a record header in a private copy of the guest's bytes (never in guest memory, which
// the guest may rewrite meanwhile). Returns RecordError.None and the header when it is well formed.
internal static class RecordParser
{
    internal static RecordError Parse(ReadOnlySpan<byte> copy, uint readableLength, bool logTailNegotiated, out RecordHeader header)
    {
        header = default;
        if (copy.Length < WatchdogProtocol.RecordHeaderSize || readableLength < WatchdogProtocol.RecordHeaderSize)
        {
            return RecordError.TooShort;
        }

        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(copy[WatchdogProtocol.RecordType..]);
        byte codeCount = copy[WatchdogProtocol.RecordCodeCount];
        byte codeFormat = copy[WatchdogProtocol.RecordCodeFormat];
        ushort messageLength = BinaryPrimitives.ReadUInt16LittleEndian(copy[WatchdogProtocol.RecordMessageLength..]);
        uint logTailLength = BinaryPrimitives.ReadUInt32LittleEndian(copy[WatchdogProtocol.RecordLogTailLength..]);
        header = new RecordHeader(
            type,
            codeCount,
            codeFormat,
            BinaryPrimitives.ReadUInt32LittleEndian(copy[WatchdogProtocol.RecordSequence..]),
            BinaryPrimitives.ReadUInt32LittleEndian(copy[WatchdogProtocol.RecordVcpu..]),
            BinaryPrimitives.ReadUInt64LittleEndian(copy[WatchdogProtocol.RecordGuestTime..]),
            messageLength,
            logTailLength);

        if (codeCount > WatchdogProtocol.CodesMax)
        {
            return RecordError.CodeCount;
        }

        if (codeFormat > (byte)PanicCodeFormat.HyperVCrash)
        {
            return RecordError.CodeFormat;
        }

        if (messageLength > WatchdogProtocol.MessageMax)
        {
            return RecordError.MessageLength;
        }

        if (logTailLength > WatchdogProtocol.LogTailMax)
        {
            return RecordError.LogTailLength;
        }

        if (logTailLength != 0 && !logTailNegotiated)
        {
            return RecordError.LogTailNotNegotiated;
        }

        // Both lengths are bounded above, so this sum cannot overflow.
        uint total = (uint)WatchdogProtocol.RecordHeaderSize + messageLength + logTailLength;
        if (total > readableLength || total > (uint)copy.Length)
        {
            return RecordError.Overrun;
        }

        if (type is not (WatchdogProtocol.RecordTypePanic or WatchdogProtocol.RecordTypeCrashLoaded or WatchdogProtocol.RecordTypeShutdown))
        {
            return RecordError.UnknownType;
        }

        return RecordError.None;
    }

    internal static ulong Code(ReadOnlySpan<byte> copy, int index) =>
        BinaryPrimitives.ReadUInt64LittleEndian(copy[(WatchdogProtocol.RecordCodes + (index * sizeof(ulong)))..]);

    internal static string Describe(RecordError error) => error switch
    {
        RecordError.TooShort => "readable part shorter than the 80-byte record header",
        RecordError.TooManyBuffers => "record chain has more than 8 buffers",
        RecordError.CodeCount => "code_count above 5",
        RecordError.CodeFormat => "unknown code_format",
        RecordError.MessageLength => "message_len above 1024",
        RecordError.LogTailLength => "log_tail_len above 16384",
        RecordError.LogTailNotNegotiated => "log tail without VIRTIO_WDT_F_LOG_TAIL",
        RecordError.Overrun => "record runs past the readable part",
        RecordError.UnknownType => "unknown record type",
        _ => "none",
    };
}
