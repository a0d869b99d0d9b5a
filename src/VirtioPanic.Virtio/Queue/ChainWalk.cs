using System.Runtime.CompilerServices;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Queue;

// The running state of one chain walk, shared by both ring formats: the per-buffer checks that do
// not depend on the ring layout (length, chain limit, guest-memory range, 2^32 total, readable
// before writable) and the translation into the queue's scratch storage. Lengths are summed in 64
// bits so the 2^32 check cannot itself overflow.
internal struct ChainWalk
{
    internal int Count;
    internal int Readable;
    internal ulong Total;
    internal uint ReadableLength;
    internal uint WritableLength;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal VirtqueueStatus Add(GuestMemory memory, GuestMemorySlice[] scratch, ulong address, uint length, bool writable)
    {
        if (length == 0)
        {
            return VirtqueueStatus.ZeroLengthBuffer;
        }

        if (Count == scratch.Length)
        {
            return VirtqueueStatus.ChainTooLong;
        }

        // Translate straight into the scratch slot; a failed translation leaves it empty and the
        // count unchanged.
        if (memory.TryGetSlice(address, length, out scratch[Count]) != GuestMemoryStatus.Ok)
        {
            return VirtqueueStatus.BufferOutOfRange;
        }

        Total += length;
        if (Total > uint.MaxValue)
        {
            return VirtqueueStatus.TotalLengthOverflow;
        }

        if (writable)
        {
            WritableLength += length;
        }
        else
        {
            // virtio 1.2 §2.7.4.2 / §2.8.17: device-readable buffers come first.
            if (WritableLength != 0)
            {
                return VirtqueueStatus.ReadableAfterWritable;
            }

            Readable++;
            ReadableLength += length;
        }

        Count++;
        return VirtqueueStatus.Ok;
    }

    internal readonly DescriptorChain ToChain(ChainToken token, GuestMemorySlice[] scratch) =>
        new(token, new ReadOnlySpan<GuestMemorySlice>(scratch, 0, Count), Readable, ReadableLength, WritableLength);
}
