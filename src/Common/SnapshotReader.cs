using System.Buffers.Binary;

namespace VirtioPanic.Snapshots;

// The one reader of snapshot images (transport, controller, device): bounds-checked little-endian,
// over bytes someone else may have written. Never throws: a read past the end latches Failed and
// yields zeros (or false from the Try forms), so a parser reads a whole record and checks once;
// each layer turns Failed into its SnapshotStatus. Compiled into each project that reads snapshots
// as linked source (src/Common), so it stays internal everywhere.
internal ref struct SnapshotReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _position;

    internal SnapshotReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _position = 0;
        Failed = false;
    }

    internal bool Failed { get; private set; }

    internal readonly bool AtEnd => _position == _data.Length;

    internal byte ReadByte() => TryTake(1, out ReadOnlySpan<byte> b) ? b[0] : (byte)0;

    // A bool is one byte, 0 or 1; anything else latches Failed.
    internal bool ReadBool()
    {
        byte raw = ReadByte();
        if (raw > 1)
        {
            Failed = true;
        }

        return raw == 1;
    }

    internal ushort ReadUInt16() => TryTake(2, out ReadOnlySpan<byte> b) ? BinaryPrimitives.ReadUInt16LittleEndian(b) : (ushort)0;

    internal uint ReadUInt32() => TryTake(4, out ReadOnlySpan<byte> b) ? BinaryPrimitives.ReadUInt32LittleEndian(b) : 0;

    internal ulong ReadUInt64() => TryTake(8, out ReadOnlySpan<byte> b) ? BinaryPrimitives.ReadUInt64LittleEndian(b) : 0;

    internal ReadOnlySpan<byte> ReadBytes(int count) => TryTake(count, out ReadOnlySpan<byte> b) ? b : default;

    // A u32 length, then that many bytes.
    internal ReadOnlySpan<byte> ReadBlob()
    {
        uint length = ReadUInt32();
        if (length > (uint)(_data.Length - _position))
        {
            Failed = true;
            return default;
        }

        return ReadBytes((int)length);
    }

    // Try forms, for parsers that check each field as they go: true while nothing has failed.
    internal bool TryReadByte(out byte value)
    {
        value = ReadByte();
        return !Failed;
    }

    internal bool TryReadBool(out bool value)
    {
        value = ReadBool();
        return !Failed;
    }

    internal bool TryReadUInt16(out ushort value)
    {
        value = ReadUInt16();
        return !Failed;
    }

    internal bool TryReadUInt32(out uint value)
    {
        value = ReadUInt32();
        return !Failed;
    }

    internal bool TryReadUInt64(out ulong value)
    {
        value = ReadUInt64();
        return !Failed;
    }

    private bool TryTake(int count, out ReadOnlySpan<byte> bytes)
    {
        if (Failed || count < 0 || _data.Length - _position < count)
        {
            Failed = true;
            bytes = default;
            return false;
        }

        bytes = _data.Slice(_position, count);
        _position += count;
        return true;
    }
}
