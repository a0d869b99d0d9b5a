using System.Runtime.CompilerServices;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Queue;

// A validated view of a split descriptor table (queue descriptor table or an indirect table).
// The guest owns the bytes; Read copies one descriptor out in a single 16-byte read.
internal readonly struct DescriptorTable
{
    private readonly GuestMemorySlice _slice;

    internal DescriptorTable(GuestMemorySlice slice) => _slice = slice;

    internal bool IsEmpty => _slice.IsEmpty;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal VirtqDescriptor Read(uint index) => _slice.Read<VirtqDescriptor>(index * (uint)VirtqDescriptor.Size);
}
