using System.Buffers.Binary;

namespace VirtioPanic.Snapshots;

// The one writer of snapshot images, the mirror of SnapshotReader: little-endian fixed-width
// fields, bools as one byte, blobs as a u32 length and the bytes. Linked source (src/Common).
internal sealed class SnapshotWriter
{
    private byte[] _buffer = new byte[256];
    private int _length;

    internal void WriteByte(byte value) => Reserve(1)[0] = value;

    internal void WriteBool(bool value) => WriteByte(value ? (byte)1 : (byte)0);

    internal void WriteUInt16(ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(Reserve(2), value);

    internal void WriteUInt32(uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Reserve(4), value);

    internal void WriteUInt64(ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Reserve(8), value);

    internal void WriteBytes(ReadOnlySpan<byte> bytes) => bytes.CopyTo(Reserve(bytes.Length));

    internal void WriteBlob(ReadOnlySpan<byte> blob)
    {
        WriteUInt32((uint)blob.Length);
        WriteBytes(blob);
    }

    internal byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();

    private Span<byte> Reserve(int count)
    {
        if (_length + count > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + count));
        }

        Span<byte> span = _buffer.AsSpan(_length, count);
        _length += count;
        return span;
    }
}
