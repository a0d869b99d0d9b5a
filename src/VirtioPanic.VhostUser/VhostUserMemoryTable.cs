using Microsoft.Win32.SafeHandles;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.VhostUser;

// The guest's memory as the front end described it in SET_MEM_TABLE: each region mapped from the
// file descriptor that came with the message, assembled into one GuestMemory (guest-physical
// addresses, used for every buffer address in the rings), plus the front end's own virtual
// address of each region, used only to translate the ring addresses of SET_VRING_ADDR (the "two
// address spaces" of vhost-user.rst, "Memory regions description").
internal sealed class VhostUserMemoryTable : IDisposable
{
    private readonly Region[] _regions;

    private VhostUserMemoryTable(GuestMemory memory, Region[] regions)
    {
        Memory = memory;
        _regions = regions;
    }

    internal GuestMemory Memory { get; }

    internal int RegionCount => _regions.Length;

    // Validates the (untrusted) table and maps every region. Returns null with a reason instead of
    // throwing; on failure nothing stays mapped. The descriptors are not consumed: the caller
    // closes them (mappings stay valid after close).
    internal static VhostUserMemoryTable? TryCreate(ReadOnlySpan<RegionDescription> regions, ReadOnlySpan<SafeFileHandle> files, out string? error)
    {
        error = null;
        if (regions.Length == 0 || regions.Length > Protocol.VhostUserWire.MaxMemoryRegions)
        {
            error = $"region count {regions.Length} is not between 1 and {Protocol.VhostUserWire.MaxMemoryRegions}";
            return null;
        }

        if (files.Length != regions.Length)
        {
            error = $"{regions.Length} regions came with {files.Length} file descriptors";
            return null;
        }

        long pageSize = Environment.SystemPageSize;
        for (int i = 0; i < regions.Length; i++)
        {
            RegionDescription r = regions[i];
            if (r.Size == 0 || r.Size > long.MaxValue || r.GuestAddress + r.Size < r.GuestAddress || r.UserAddress + r.Size < r.UserAddress)
            {
                error = $"region {i} (gpa 0x{r.GuestAddress:x}, size 0x{r.Size:x}) is empty or wraps the address space";
                return null;
            }

            if (r.MmapOffset > long.MaxValue || (long)r.MmapOffset % pageSize != 0 || r.MmapOffset + r.Size < r.MmapOffset)
            {
                error = $"region {i} mmap offset 0x{r.MmapOffset:x} is not a page multiple";
                return null;
            }

            for (int j = 0; j < i; j++)
            {
                RegionDescription o = regions[j];
                if (r.UserAddress < o.UserAddress + o.Size && o.UserAddress < r.UserAddress + r.Size)
                {
                    error = $"regions {j} and {i} overlap in the front end's address space";
                    return null;
                }
            }
        }

        var mapped = new List<GuestMemoryRegion>(regions.Length);
        try
        {
            var table = new Region[regions.Length];
            for (int i = 0; i < regions.Length; i++)
            {
                RegionDescription r = regions[i];
                mapped.Add(GuestMemoryRegion.MapFile(r.GuestAddress, files[i], (long)r.MmapOffset, r.Size));
                table[i] = new Region(r.GuestAddress, r.Size, r.UserAddress);
            }

            // Overlapping guest-physical ranges are rejected by GuestMemory itself.
            var memory = new GuestMemory(mapped, ownsRegions: true);
            return new VhostUserMemoryTable(memory, table);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or PlatformNotSupportedException)
        {
            foreach (GuestMemoryRegion region in mapped)
            {
                region.Dispose();
            }

            error = e.Message;
            return null;
        }
    }

    // Front-end virtual address → guest-physical address, for ring areas. The whole
    // [address, +length) range must lie in one region.
    internal bool TryTranslateUserAddress(ulong userAddress, ulong length, out ulong guestAddress)
    {
        foreach (Region region in _regions)
        {
            ulong offset = userAddress - region.UserAddress;
            if (offset < region.Size && length <= region.Size - offset)
            {
                guestAddress = region.GuestAddress + offset;
                return true;
            }
        }

        guestAddress = 0;
        return false;
    }

    public void Dispose() => Memory.Dispose();

    internal readonly record struct RegionDescription(ulong GuestAddress, ulong Size, ulong UserAddress, ulong MmapOffset);

    private readonly record struct Region(ulong GuestAddress, ulong Size, ulong UserAddress);
}
