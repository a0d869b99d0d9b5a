using System.Buffers.Binary;

namespace VirtioPanic.Fuzz;

// Reads fields from a fuzz input, little-endian. Past the end every read returns zeros, so any
// input decodes to something and a short input is simply a short run.
internal ref struct FuzzInput
{
    private readonly ReadOnlySpan<byte> _data;
    private int _position;

    internal FuzzInput(ReadOnlySpan<byte> data)
    {
        _data = data;
        _position = 0;
    }

    internal readonly bool IsEmpty => _position >= _data.Length;

    internal readonly int Remaining => Math.Max(0, _data.Length - _position);

    internal byte U8()
    {
        return _position < _data.Length ? _data[_position++] : (byte)0;
    }

    internal ushort U16() => (ushort)(U8() | (U8() << 8));

    internal uint U32() => U16() | ((uint)U16() << 16);

    internal ulong U64() => U32() | ((ulong)U32() << 32);

    internal bool Bool() => (U8() & 1) != 0;

    // Up to count bytes (fewer at the end of the input).
    internal ReadOnlySpan<byte> Bytes(int count)
    {
        int n = Math.Min(Math.Max(count, 0), Remaining);
        ReadOnlySpan<byte> bytes = _data.Slice(_position, n);
        _position += n;
        return bytes;
    }

    internal ReadOnlySpan<byte> Rest() => Bytes(Remaining);

    // The value of the next width-byte field, zero-extended (width 0..8).
    internal ulong Value(int width)
    {
        Span<byte> buffer = stackalloc byte[8];
        buffer.Clear();
        Bytes(width).CopyTo(buffer);
        return BinaryPrimitives.ReadUInt64LittleEndian(buffer);
    }
}
