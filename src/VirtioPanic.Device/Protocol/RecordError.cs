namespace VirtioPanic.Device.Protocol;

// Why a committed event record was not accepted (spec §6.5.3).
internal enum RecordError
{
    None,
    TooShort,
    TooManyBuffers,
    CodeCount,
    CodeFormat,
    MessageLength,
    LogTailLength,
    LogTailNotNegotiated,
    Overrun,
    UnknownType,
}
