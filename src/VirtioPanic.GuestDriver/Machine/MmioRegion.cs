namespace VirtioPanic.GuestDriver.Machine;

// One claimed range of guest-physical address space and what handles accesses to it.
internal sealed class MmioRegion
{
    internal MmioRegion(ulong start, ulong size, object owner, int index, MmioRegionHandler read, MmioRegionWriter write)
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

    internal MmioRegionHandler Read { get; }

    internal MmioRegionWriter Write { get; }
}

internal delegate void MmioRegionHandler(ulong offset, Span<byte> data);

internal delegate void MmioRegionWriter(ulong offset, ReadOnlySpan<byte> data);
