using System.Buffers.Binary;

namespace VirtioPanic.Virtio.Device;

// Bounds-checked little-endian reader over an untrusted snapshot. Never throws: a read past the
// end returns false and latches Failed, so a parser can read a whole record and check once.
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

    internal bool TryReadByte(out byte value)
    {
        if (!TryTake(1, out ReadOnlySpan<byte> bytes))
        {
            value = 0;
            return false;
        }

        value = bytes[0];
        return true;
    }

    internal bool TryReadBool(out bool value)
    {
        bool ok = TryReadByte(out byte raw);
        if (ok && raw > 1)
        {
            Failed = true;
            ok = false;
        }

        value = raw == 1;
        return ok;
    }

    internal bool TryReadUInt16(out ushort value)
    {
        bool ok = TryTake(2, out ReadOnlySpan<byte> bytes);
        value = ok ? BinaryPrimitives.ReadUInt16LittleEndian(bytes) : (ushort)0;
        return ok;
    }

    internal bool TryReadUInt32(out uint value)
    {
        bool ok = TryTake(4, out ReadOnlySpan<byte> bytes);
        value = ok ? BinaryPrimitives.ReadUInt32LittleEndian(bytes) : 0;
        return ok;
    }

    internal bool TryReadUInt64(out ulong value)
    {
        bool ok = TryTake(8, out ReadOnlySpan<byte> bytes);
        value = ok ? BinaryPrimitives.ReadUInt64LittleEndian(bytes) : 0;
        return ok;
    }

    private bool TryTake(int count, out ReadOnlySpan<byte> bytes)
    {
        if (Failed || _data.Length - _position < count)
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
