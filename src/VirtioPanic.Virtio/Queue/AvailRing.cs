using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Queue;

// A validated view of the split available ring (virtio 1.2 §2.7.6). Written by the driver, read
// by the device. Ordering contract of the shared fields:
//   idx        — driver stores with release after filling ring[]; device loads with acquire
//                (LoadIndex), which orders the later plain loads of ring[] and the descriptors.
//   flags      — driver stores; device loads after the full fence that follows publishing used.idx.
//   used_event — same as flags (EVENT_IDX only).
internal readonly struct AvailRing
{
    private readonly GuestMemorySlice _slice;
    private readonly uint _usedEventOffset;

    internal AvailRing(GuestMemorySlice slice, ushort queueSize)
    {
        _slice = slice;
        _usedEventOffset = SplitRingLayout.UsedEventOffset(queueSize);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ushort LoadIndex() => _slice.LoadUInt16Acquire(SplitRingLayout.AvailIndex);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ushort LoadFlags() => _slice.LoadUInt16Acquire(SplitRingLayout.AvailFlags);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ushort LoadUsedEvent() => _slice.LoadUInt16Acquire(_usedEventOffset);

    // Plain load: ordered after the acquire load of idx that made this slot visible.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ushort ReadEntry(uint slot) => _slice.ReadUInt16(SplitRingLayout.AvailRing + (slot * 2));

    // ring[] as exactly queue-size entries, for a batch: built once from the slice Activate
    // validated, so per entry only the masked slot is bounds-checked (one compare). Raw values,
    // little-endian in guest memory: read them through Entry. Plain loads, ordered like ReadEntry.
    internal ReadOnlySpan<ushort> Entries
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get =>
            MemoryMarshal.Cast<byte, ushort>(_slice.Span.Slice((int)SplitRingLayout.AvailRing, (int)(_usedEventOffset - SplitRingLayout.AvailRing)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ushort Entry(ushort raw) => BitConverter.IsLittleEndian ? raw : BinaryPrimitives.ReverseEndianness(raw);
}
