using System.Buffers.Binary;

namespace VirtioPanic.Virtio.Device;

// Little-endian, append-only writer for the controller's snapshot format. Control path only
// (snapshots are taken with the VM paused), so a growing byte list is fine.
internal sealed class SnapshotWriter
{
    private byte[] _buffer = new byte[256];
    private int _length;

    internal void WriteByte(byte value) => Reserve(1)[0] = value;

    internal void WriteBool(bool value) => WriteByte(value ? (byte)1 : (byte)0);

    internal void WriteUInt16(ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(Reserve(2), value);

    internal void WriteUInt32(uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Reserve(4), value);

    internal void WriteUInt64(ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Reserve(8), value);

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
