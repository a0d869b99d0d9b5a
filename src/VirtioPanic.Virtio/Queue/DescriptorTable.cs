using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Queue;

// A validated view of a split descriptor table (queue descriptor table or an indirect table).
// The guest owns the bytes; Read copies one descriptor out in a single 16-byte read.
internal readonly struct DescriptorTable
{
    private readonly GuestMemorySlice _slice;

    internal DescriptorTable(GuestMemorySlice slice) => _slice = slice;

    internal bool IsEmpty => _slice.IsEmpty;

    // The table as descriptors, for a batch: its length is the entry count (the queue size for the
    // queue's table), so one "index < Length" check both validates a guest index and removes the
    // span's own bounds check.
    internal ReadOnlySpan<VirtqDescriptor> Entries
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => MemoryMarshal.Cast<byte, VirtqDescriptor>(_slice.Span);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal VirtqDescriptor Read(uint index) => _slice.Read<VirtqDescriptor>(index * (uint)VirtqDescriptor.Size);
}
