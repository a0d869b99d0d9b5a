using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Memory;

// Design: the three areas of one split virtqueue (virtio 1.2 §2.7.5 descriptor table, §2.7.6
// available ring, §2.7.8 used ring) as raw host addresses, validated once, when the queue is
// activated (Create), instead of on every access as GuestMemorySlice's accessors do.
//
// Why no accessor can leave the areas: Create takes the three slices GuestMemory.TryGetSlice
// validated at activation and refuses any shorter than the queue size's layout needs, and the
// size is a power of two. Every per-entry accessor takes a position and masks it with size - 1,
// so the entry it touches is one of the `size` entries Create checked, whatever the position (a
// guest-written head index included: the caller still refuses head >= size for its typed error,
// the mask is what keeps memory safe). The fixed fields (avail.flags, avail.idx, used_event,
// used.flags, used.idx, avail_event) are at offsets inside the checked lengths. The view is made
// by every activation (SplitVirtqueue.Activate, which RestoreState runs too) and dropped by Reset,
// so a restored or re-activated queue is re-validated against its new configuration and memory.
// A view is only valid while the GuestMemory its slices came from is alive (as a slice is).
//
// Ordering contract of the shared fields (the callers' notes say which race each closes):
//   avail.idx    driver stores with release after filling ring[]; LoadAvailIndex is an acquire
//                load, which orders the later plain loads of ring[] and the descriptors.
//   avail.flags, used_event  driver stores; acquire loads after the full fence that follows
//                publishing used.idx.
//   used.ring[]  plain stores (WriteUsedElement); nothing reads them before used.idx moves.
//   used.idx     StoreUsedIndex is a release store (§2.7.8.2: len and data before idx);
//                ExchangeUsedIndex is that store and a full fence in one instruction.
//   used.flags, avail_event  Exchange*: the store and the full fence after it (an Interlocked
//                exchange, a full-fence operation in the .NET memory model; x64 `xchg`, Arm64
//                `swpal`); every such field is 2-byte aligned inside a 4-aligned area.
internal readonly struct SplitRingView
{
    private const uint AvailFlags = 0;
    private const uint AvailIndex = 2;
    private const uint AvailRing = 4;
    private const uint UsedFlags = 0;
    private const uint UsedIndex = 2;
    private const uint UsedRing = 4;
    private const int DescriptorSize = 16;
    private const int UsedElementSize = 8;

    private readonly nint _descriptors;
    private readonly nint _avail;
    private readonly nint _used;
    private readonly nint _usedEvent;    // avail + 4 + 2 * size
    private readonly nint _availEvent;   // used + 4 + 8 * size
    private readonly uint _mask;

    private SplitRingView(nint descriptors, nint avail, nint used, ushort size)
    {
        _descriptors = descriptors;
        _avail = avail;
        _used = used;
        _usedEvent = avail + (nint)(AvailRing + (2u * size));
        _availEvent = used + (nint)(UsedRing + ((uint)UsedElementSize * size));
        _mask = (uint)size - 1;
    }

    internal bool IsValid => _avail != 0;

    // The view of three validated slices; false (and no view) when the size is not a power of two
    // or any slice is shorter than the layout of that size needs (§2.7: table 16 * size, avail
    // 6 + 2 * size, used 6 + 8 * size bytes). The caller validated the alignments (the table 16,
    // avail 2, used 4), and regions keep host and guest addresses congruent mod 16.
    internal static bool TryCreate(GuestMemorySlice descriptors, GuestMemorySlice avail, GuestMemorySlice used, ushort size, out SplitRingView view)
    {
        if (size == 0 || (size & (size - 1)) != 0
            || descriptors.Length < (uint)DescriptorSize * size
            || avail.Length < 6u + (2u * size)
            || used.Length < 6u + ((uint)UsedElementSize * size))
        {
            view = default;
            return false;
        }

        view = new SplitRingView(descriptors.HostAddress, avail.HostAddress, used.HostAddress, size);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ushort LoadAvailIndex() => LoadAcquire(_avail + (nint)AvailIndex);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ushort LoadAvailFlags() => LoadAcquire(_avail + (nint)AvailFlags);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ushort LoadUsedEvent() => LoadAcquire(_usedEvent);

    // avail.ring[position mod size]: a plain load, ordered after the acquire load of idx that made
    // the entry visible.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal unsafe ushort ReadAvailEntry(uint position)
    {
        // SAFETY: (position & _mask) < size, and TryCreate checked the avail area holds
        // 4 + 2 * size bytes; the area is 2-aligned, so the entry is too.
        ushort raw = *(ushort*)(_avail + (nint)AvailRing + (nint)((position & _mask) * 2));
        return BitConverter.IsLittleEndian ? raw : BinaryPrimitives.ReverseEndianness(raw);
    }

    // descriptor[index mod size], one 16-byte copy. The caller refuses index >= size first (its
    // typed error); the mask is what keeps the read inside the table.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal unsafe VirtqDescriptor ReadDescriptor(uint index)
    {
        // SAFETY: (index & _mask) < size, and TryCreate checked the table holds 16 * size bytes;
        // the table is 16-aligned.
        return *(VirtqDescriptor*)(_descriptors + (nint)((index & _mask) * DescriptorSize));
    }

    // used.ring[position mod size] = {le32 id, le32 len} as one 8-byte plain store (building it as
    // a struct made the JIT spill two halves and reload them: a store-forwarding stall).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal unsafe void WriteUsedElement(uint position, uint id, uint length)
    {
        ulong value = ((ulong)length << 32) | id;
        // SAFETY: (position & _mask) < size, and TryCreate checked the used area holds
        // 4 + 8 * size bytes. The element is 4-aligned only (offset 4 of a 4-aligned area): an
        // unaligned store, which x64 and Arm64 perform at any alignment.
        Unsafe.WriteUnaligned(
            (void*)(_used + (nint)UsedRing + (nint)((position & _mask) * UsedElementSize)),
            BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal unsafe void StoreUsedIndex(ushort index)
    {
        // SAFETY: used.idx is at offset 2 of the used area, which TryCreate checked is at least
        // 6 bytes long; 2-aligned.
        Volatile.Write(ref *(ushort*)(_used + (nint)UsedIndex), BitConverter.IsLittleEndian ? index : BinaryPrimitives.ReverseEndianness(index));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal unsafe void StoreUsedFlags(ushort flags)
    {
        // SAFETY: used.flags is at offset 0 of the checked used area; 2-aligned.
        Volatile.Write(ref *(ushort*)(_used + (nint)UsedFlags), BitConverter.IsLittleEndian ? flags : BinaryPrimitives.ReverseEndianness(flags));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ExchangeUsedIndex(ushort index) => Exchange(_used + (nint)UsedIndex, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ExchangeUsedFlags(ushort flags) => Exchange(_used + (nint)UsedFlags, flags);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ExchangeAvailEvent(ushort index) => Exchange(_availEvent, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe ushort LoadAcquire(nint address)
    {
        // SAFETY: address is one of the fixed fields computed from a view TryCreate checked
        // (avail.flags at 0, avail.idx at 2, used_event at 4 + 2 * size of a 6 + 2 * size area);
        // every one is 2-aligned.
        ushort raw = Volatile.Read(ref *(ushort*)address);
        return BitConverter.IsLittleEndian ? raw : BinaryPrimitives.ReverseEndianness(raw);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Exchange(nint address, ushort value)
    {
        // SAFETY: address is one of the fixed fields computed from a view TryCreate checked
        // (used.flags at 0, used.idx at 2, avail_event at 4 + 8 * size of a 6 + 8 * size area);
        // every one is 2-aligned, so the exchange is one atomic access within one cache line.
        Interlocked.Exchange(ref *(ushort*)address, BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value));
    }
}
