namespace VirtioPanic.GuestDriver.Watchdog;

// One posted eventq record buffer: a readable part (80-byte header, message, log tail, one
// contiguous buffer) and an 8-byte writable status.
internal sealed class RecordBuffer
{
    internal RecordBuffer(ulong record, uint recordLength, ulong status)
    {
        Record = record;
        RecordLength = recordLength;
        Status = status;
    }

    internal ulong Record { get; }

    internal uint RecordLength { get; }

    internal ulong Status { get; }

    internal bool Committed { get; set; }
}
