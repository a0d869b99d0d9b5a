namespace VirtioPanic.Device.Protocol;

// The fixed part of struct virtio_wdt_record, decoded from the device's private copy.
internal readonly record struct RecordHeader(
    ushort Type,
    byte CodeCount,
    byte CodeFormat,
    uint Sequence,
    uint VcpuId,
    ulong GuestTimeNs,
    ushort MessageLength,
    uint LogTailLength);
