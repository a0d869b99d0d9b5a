using System.Buffers.Binary;
using System.Text;

namespace VirtioPanic.Device.Tests.Rig;

// Builds the bytes of a struct virtio_wdt_record (spec §6.5.1); fields can be set to illegal values.
public sealed record RecordSpec
{
    public const uint Committed = 0x4D4D4F43;

    public uint State { get; init; } = Committed;

    public ushort Type { get; init; } = 1;

    public byte CodeCount { get; init; }

    public byte CodeFormat { get; init; }

    public uint Sequence { get; init; } = 1;

    public uint VcpuId { get; init; } = 0xFFFFFFFF;

    public ulong GuestTimeNs { get; init; }

    public ulong[] Codes { get; init; } = [];

    public byte[] Message { get; init; } = [];

    public byte[] LogTail { get; init; } = [];

    public ushort? MessageLengthOverride { get; init; }

    public uint? LogTailLengthOverride { get; init; }

    public static RecordSpec Panic(string message) => new() { Type = 1, Message = Encoding.UTF8.GetBytes(message) };

    public byte[] ToBytes()
    {
        var bytes = new byte[80 + Message.Length + LogTail.Length];
        Span<byte> b = bytes;
        BinaryPrimitives.WriteUInt32LittleEndian(b, State);
        BinaryPrimitives.WriteUInt16LittleEndian(b[4..], Type);
        b[6] = CodeCount;
        b[7] = CodeFormat;
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Sequence);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], VcpuId);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], GuestTimeNs);
        for (int i = 0; i < Codes.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(b[(24 + (8 * i))..], Codes[i]);
        }

        BinaryPrimitives.WriteUInt16LittleEndian(b[0x40..], MessageLengthOverride ?? (ushort)Message.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b[0x44..], LogTailLengthOverride ?? (uint)LogTail.Length);
        Message.CopyTo(b[80..]);
        LogTail.CopyTo(b[(80 + Message.Length)..]);
        return bytes;
    }
}
