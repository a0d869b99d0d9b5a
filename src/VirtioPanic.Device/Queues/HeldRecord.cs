using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Queues;

// A posted eventq buffer the device holds until the driver commits a record into it: the chain's
// token and copies of its validated slices (readable ones first).
internal struct HeldRecord
{
    public ChainToken Token;
    public GuestMemorySlice[] Buffers;
    public int Count;
    public int Readable;
    public uint ReadableLength;

    public readonly ReadOnlySpan<GuestMemorySlice> ReadableBuffers => Buffers.AsSpan(0, Readable);

    public readonly ReadOnlySpan<GuestMemorySlice> WritableBuffers => Buffers.AsSpan(Readable, Count - Readable);
}
