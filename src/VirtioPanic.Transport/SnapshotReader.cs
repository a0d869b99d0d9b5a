using System.Buffers.Binary;

namespace VirtioPanic.Transport;

// Bounds-checked little-endian reader over an untrusted snapshot. Never throws: reading past the
// end latches Failed and yields zeros, so a parser reads a whole record and checks once.
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

    internal ushort ReadUInt16() => TryTake(2, out ReadOnlySpan<byte> b) ? BinaryPrimitives.ReadUInt16LittleEndian(b) : (ushort)0;

    internal uint ReadUInt32() => TryTake(4, out ReadOnlySpan<byte> b) ? BinaryPrimitives.ReadUInt32LittleEndian(b) : 0;

    internal ulong ReadUInt64() => TryTake(8, out ReadOnlySpan<byte> b) ? BinaryPrimitives.ReadUInt64LittleEndian(b) : 0;

    internal ReadOnlySpan<byte> ReadBytes(int count) => TryTake(count, out ReadOnlySpan<byte> b) ? b : default;

    internal ReadOnlySpan<byte> ReadBlob()
    {
        uint length = ReadUInt32();
        return length > (uint)(_data.Length - _position) ? Fail() : ReadBytes((int)length);
    }

    private ReadOnlySpan<byte> Fail()
    {
        Failed = true;
        return default;
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
