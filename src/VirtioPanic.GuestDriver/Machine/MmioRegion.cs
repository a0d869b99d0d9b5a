using System.Buffers;

namespace VirtioPanic.GuestDriver.Machine;

// One claimed range of guest-physical address space and what handles accesses to it
// (Read/Write get the access's bytes and its offset from Start).
internal sealed class MmioRegion
{
    internal MmioRegion(ulong start, ulong size, object owner, int index, SpanAction<byte, ulong> read, ReadOnlySpanAction<byte, ulong> write)
    {
        Start = start;
        Size = size;
        Owner = owner;
        Index = index;
        Read = read;
        Write = write;
    }

    internal ulong Start { get; }

    internal ulong Size { get; }

    internal object Owner { get; }

    internal int Index { get; }

    internal SpanAction<byte, ulong> Read { get; }

    internal ReadOnlySpanAction<byte, ulong> Write { get; }
}
