using System.Buffers.Binary;

namespace VirtioPanic.VhostUser.Protocol;

// Wire layout of vhost-user messages (vhost-user.rst, "Message Specification"). All fields are in
// the host's native byte order; both peers run on the same host, and this back end supports
// little-endian hosts only (x86-64, arm64), so the little-endian readers below are native.
//
//   Header (12 bytes)             | request u32 | flags u32 | size u32 |  then `size` payload bytes
//   flags: bits 0-1 version (1), bit 2 REPLY, bit 3 NEED_REPLY
//
//   Payloads this back end parses (offset: field):
//   u64                      0: value (features, protocol features, queue count, ack status)
//   vring state (8)          0: index u32   4: num u32
//   vring address (40)       0: index u32   4: flags u32   8: descriptor u64  16: used u64  24: avail u64  32: log u64
//   vring fd (8)             0: u64, bits 0-7 ring index, bit 8 "no fd" (polling)
//   memory table (8 + 32n)   0: count u32   4: padding u32,
//                            then per region: guest address u64, size u64, front-end user address u64, mmap offset u64
//   device config (12 + n)   0: offset u32  4: size u32  8: flags u32  12: n bytes
internal static class VhostUserWire
{
    internal const int HeaderSize = 12;
    internal const uint VersionMask = 0x3;
    internal const uint Version = 0x1;
    internal const uint ReplyFlag = 0x4;
    internal const uint NeedReplyFlag = 0x8;

    // The largest payload this back end accepts. The biggest message it handles is GET/SET_CONFIG
    // with 256 bytes of configuration (VHOST_USER_MAX_CONFIG_SIZE); the memory table with 8
    // regions is 264. A header announcing more is not read: the connection is dropped.
    internal const int MaxPayloadSize = 4096;

    internal const int MaxMemoryRegions = 8;
    internal const int MemoryRegionSize = 32;
    internal const int MemoryTableHeaderSize = 8;
    internal const int VringStateSize = 8;
    internal const int VringAddressSize = 40;
    internal const int U64Size = 8;
    internal const int ConfigHeaderSize = 12;
    internal const int MaxConfigSize = 256;

    internal const ulong VringFdIndexMask = 0xff;
    internal const ulong VringFdNoFdFlag = 0x100;

    internal static void WriteHeader(Span<byte> destination, uint request, uint flags, int size)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, request);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], (uint)size);
    }

    internal static uint ReadUInt32(ReadOnlySpan<byte> payload, int offset) =>
        BinaryPrimitives.ReadUInt32LittleEndian(payload[offset..]);

    internal static ulong ReadUInt64(ReadOnlySpan<byte> payload, int offset) =>
        BinaryPrimitives.ReadUInt64LittleEndian(payload[offset..]);
}
