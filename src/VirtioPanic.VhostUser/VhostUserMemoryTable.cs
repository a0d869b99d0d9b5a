using Microsoft.Win32.SafeHandles;
using VirtioPanic.VhostUser.Interop;
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
    //
    // Each region must lie wholly inside the file that came with it (statx): touching a mapping
    // past the end of its file raises SIGBUS, which kills the process, so a 4 KiB memfd declared
    // as 1 GiB is refused here rather than found by the first ring access. That check holds only
    // while the file cannot shrink: a memfd sealed with F_SEAL_SHRINK (QEMU's memory-backend-memfd
    // seals by default) cannot; any other file (memory-backend-file, User-Mode Linux's memory
    // file) can be truncated by the front end at any time. `unsealed` reports such a file;
    // `requireSealed` (VhostUserBackendOptions.RequireSealedMemory) refuses it.
    internal static VhostUserMemoryTable? TryCreate(ReadOnlySpan<RegionDescription> regions, ReadOnlySpan<SafeFileHandle> files, bool requireSealed, out bool unsealed, out string? error)
    {
        error = null;
        unsealed = false;
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

            if (CheckFile(i, r, files[i], requireSealed, ref unsealed) is { } fileError)
            {
                error = fileError;
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

    private static string? CheckFile(int index, RegionDescription r, SafeFileHandle file, bool requireSealed, ref bool unsealed)
    {
        int fd = (int)file.DangerousGetHandle();
        int status = LinuxIo.FileSizeAndType(fd, out ulong fileSize, out bool regular);
        if (status < 0)
        {
            return $"region {index}: the file descriptor cannot be examined (errno {-status})";
        }

        if (!regular)
        {
            return $"region {index}: the file descriptor is not a regular file (a memfd or a file on tmpfs/hugetlbfs)";
        }

        // MmapOffset + Size does not wrap (checked by the caller).
        if (r.MmapOffset > fileSize || r.Size > fileSize - r.MmapOffset)
        {
            return $"region {index} [mmap offset 0x{r.MmapOffset:x}, +0x{r.Size:x}) lies beyond the end of its {fileSize}-byte file";
        }

        int seals = LinuxIo.GetSeals(fd);
        if (seals < 0 || (seals & LinuxIo.SealShrink) == 0)
        {
            if (requireSealed)
            {
                return $"region {index}: the file is not sealed against shrinking (F_SEAL_SHRINK) and RequireSealedMemory is set";
            }

            unsealed = true;
        }

        return null;
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
