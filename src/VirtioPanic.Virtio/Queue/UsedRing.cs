using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Queue;

// A validated view of the split used ring (virtio 1.2 §2.7.8). Written by the device, read by the
// driver. Ordering contract of the shared fields:
//   ring[]      — device writes with plain stores, then
//   idx         — device stores with release (StoreIndex), so the driver's acquire load of idx
//                 sees every element and every byte written into the buffers before it
//                 (§2.7.8.2: len and data must be in place before idx moves).
//   flags       — device stores (NO_NOTIFY hint); driver loads after its own full fence.
//   avail_event — device stores, then a full fence before re-reading avail.idx (EVENT_IDX only).
// The Exchange* forms are those stores and the full fence after them in one instruction: an
// Interlocked exchange, which the .NET memory model makes a full-fence operation (docs/design/
// specs/Memory-model.md, "Full-fence operations"; x64 `xchg`, Arm64 `swpal`). They replace
// "store, then Interlocked.MemoryBarrier": on x64 that barrier is a locked RMW of the top of the
// stack, and in a device loop the JIT inlines whole, the frame's own loads and stores next to it
// then wait on it (the per-chain round measured 40.6 ns that way against 19.1 ns with the
// exchange, Tier-1 JIT, same machine and hour). Every field here is 2-byte aligned (the ring is
// 4-aligned, each offset even), so the exchange is one atomic access within one cache line.
internal readonly struct UsedRing
{
    private readonly GuestMemorySlice _slice;
    private readonly GuestMemorySlice _availEvent;   // the 2 bytes of avail_event, for its exchange
    private readonly uint _availEventOffset;

    internal UsedRing(GuestMemorySlice slice, ushort queueSize)
    {
        _slice = slice;
        _availEventOffset = SplitRingLayout.AvailEventOffset(queueSize);
        _availEvent = slice.Slice(_availEventOffset, sizeof(ushort));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void WriteElement(uint slot, uint id, uint length) =>
        // One 8-byte store of {le32 id, le32 len}: building the element as a struct makes the JIT
        // spill two 4-byte halves and reload them as one 8-byte value, a store-forwarding stall
        // that cost several nanoseconds per chain.
        _slice.WriteUInt64(SplitRingLayout.UsedRing + (slot * (uint)VirtqUsedElement.Size), ((ulong)length << 32) | id);

    // ring[] as exactly queue-size 8-byte elements, for a batch (built once from the validated
    // slice; per element only the masked slot is bounds-checked). The elements sit at offset 4 of a
    // 4-aligned area, so a ulong here may be 4-aligned only: plain (non-atomic) stores, which x64
    // and Arm64 perform at any alignment; nothing reads them until the release store of idx.
    internal Span<ulong> Elements
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get =>
            MemoryMarshal.Cast<byte, ulong>(_slice.Span.Slice((int)SplitRingLayout.UsedRing, (int)(_availEventOffset - SplitRingLayout.UsedRing)));
    }

    // {le32 id, le32 len} as one value for Elements (one 8-byte store, see WriteElement).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong Element(uint id, uint length)
    {
        ulong value = ((ulong)length << 32) | id;
        return BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void StoreIndex(ushort index) => _slice.StoreUInt16Release(SplitRingLayout.UsedIndex, index);

    // used.idx with release and a full fence after it (see the note on the Exchange* forms above).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ExchangeIndex(ushort index) => Exchange(SplitRingLayout.UsedIndex, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ExchangeFlags(ushort flags) => Exchange(SplitRingLayout.UsedFlags, flags);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ExchangeAvailEvent(ushort index) =>
        Interlocked.Exchange(
            ref MemoryMarshal.Cast<byte, ushort>(_availEvent.Span)[0],
            BitConverter.IsLittleEndian ? index : BinaryPrimitives.ReverseEndianness(index));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void StoreFlags(ushort flags) => _slice.StoreUInt16Release(SplitRingLayout.UsedFlags, flags);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void StoreAvailEvent(ushort index) => _slice.StoreUInt16Release(_availEventOffset, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Exchange(uint offset, ushort value) =>
        Interlocked.Exchange(
            ref MemoryMarshal.Cast<byte, ushort>(_slice.Span)[(int)(offset / sizeof(ushort))],
            BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value));
}
