using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VirtioPanic.Virtio.Memory;

/// <summary>
/// One contiguous range of guest-physical memory backed by host memory: anonymous memory with
/// guard pages, a shared (memfd) mapping another process can map too, a mapping of a file
/// descriptor someone handed us (vhost-user), or memory the hypervisor already owns.
/// </summary>
/// <remarks>
/// A region's host mapping stays valid until the region is disposed. Queues and device code keep
/// validated views (<see cref="GuestMemorySlice"/>) into it, so the hypervisor must stop every
/// device that uses a <see cref="GuestMemory"/> before disposing it.
/// </remarks>
public sealed class GuestMemoryRegion : IDisposable
{
    // Host and guest addresses must be congruent modulo this value so that every naturally
    // aligned guest address is also naturally aligned on the host: 16- and 64-bit ring fields
    // are then accessed with single atomic loads and stores.
    private const ulong RequiredCongruence = 16;

    private readonly nint _mappingBase;   // start of the whole host mapping (incl. guard page), or 0 when not ours
    private readonly nuint _mappingLength;
    private readonly SafeFileHandle? _sharedFile;
    private int _disposed;

    private GuestMemoryRegion(ulong guestAddress, ulong size, nint hostAddress, nint mappingBase, nuint mappingLength, SafeFileHandle? sharedFile, bool guarded)
    {
        GuestAddress = guestAddress;
        Size = size;
        HostAddress = hostAddress;
        _mappingBase = mappingBase;
        _mappingLength = mappingLength;
        _sharedFile = sharedFile;
        IsGuarded = guarded;
    }

    /// <summary>The first guest-physical address of the region.</summary>
    public ulong GuestAddress { get; }

    /// <summary>The region's size in bytes.</summary>
    public ulong Size { get; }

    /// <summary>The guest-physical address one past the region's last byte.</summary>
    public ulong EndAddress => GuestAddress + Size;

    /// <summary>Where the region's first byte lives in this process (for registering it with KVM, say).</summary>
    public nint HostAddress { get; }

    /// <summary>Whether inaccessible guard pages surround the mapping, so a stray host access faults.</summary>
    public bool IsGuarded { get; }

    /// <summary>The memfd behind a region made by <see cref="CreateShared"/>, for passing to another process; otherwise null.</summary>
    public SafeFileHandle? SharedFileHandle => _sharedFile;

    /// <summary>
    /// Allocates zeroed anonymous memory. On Linux the mapping is surrounded by one inaccessible
    /// page on each side, so an access that escapes the region faults instead of touching host data.
    /// </summary>
    /// <param name="guestAddress">The region's guest-physical base.</param>
    /// <param name="size">Size in bytes; not zero.</param>
    public static GuestMemoryRegion AllocateAnonymous(ulong guestAddress, ulong size)
    {
        ValidateGeometry(guestAddress, size);
        if (!OperatingSystem.IsLinux())
        {
            return AllocateUnguarded(guestAddress, size);
        }

        nuint page = (nuint)Environment.SystemPageSize;
        nuint body = RoundUp((nuint)size, page);
        nuint total = body + (2 * page);
        nint mapping = LinuxMemory.mmap(0, total, LinuxMemory.ProtNone, LinuxMemory.MapPrivate | LinuxMemory.MapAnonymous | LinuxMemory.MapNoReserve, -1, 0);
        if (mapping == LinuxMemory.s_mapFailed)
        {
            throw LinuxMemory.Failure("mmap");
        }

        // Only the body becomes accessible; the page before and the page(s) after stay PROT_NONE.
        if (LinuxMemory.mprotect(mapping + (nint)page, body, LinuxMemory.ProtRead | LinuxMemory.ProtWrite) != 0)
        {
            InvalidOperationException failure = LinuxMemory.Failure("mprotect");
            _ = LinuxMemory.munmap(mapping, total);
            throw failure;
        }

        nint host = mapping + (nint)page;
        CheckCongruence(guestAddress, host);
        return new GuestMemoryRegion(guestAddress, size, host, mapping, total, sharedFile: null, guarded: true);
    }

    /// <summary>
    /// Allocates zeroed memory in a memfd mapped shared, so that another process (a vhost-user
    /// back end, a debugger) can map the same pages through <see cref="SharedFileHandle"/>. Linux only.
    /// </summary>
    /// <param name="guestAddress">The region's guest-physical base.</param>
    /// <param name="size">Size in bytes; not zero.</param>
    /// <param name="name">A name for the memfd, visible in /proc.</param>
    public static GuestMemoryRegion CreateShared(ulong guestAddress, ulong size, string name = "virtiopanic-guest-ram")
    {
        ValidateGeometry(guestAddress, size);
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("Shared guest memory needs memfd_create (Linux).");
        }

        int fd = LinuxMemory.memfd_create(name, LinuxMemory.MfdCloexec);
        if (fd < 0)
        {
            throw LinuxMemory.Failure("memfd_create");
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            if (LinuxMemory.ftruncate(fd, checked((long)size)) != 0)
            {
                throw LinuxMemory.Failure("ftruncate");
            }

            return MapFileCore(guestAddress, handle, 0, size, writable: true, ownsHandle: true);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Maps <paramref name="size"/> bytes of an open file (a memfd received from a VMM, a file on
    /// tmpfs) shared and read-write, starting at <paramref name="fileOffset"/>. The caller keeps
    /// ownership of <paramref name="file"/>; the mapping stays valid after the handle is closed.
    /// Linux only.
    /// </summary>
    /// <param name="guestAddress">The region's guest-physical base.</param>
    /// <param name="file">An open file descriptor.</param>
    /// <param name="fileOffset">Offset of the region in the file; a multiple of the page size.</param>
    /// <param name="size">Size in bytes; not zero.</param>
    public static GuestMemoryRegion MapFile(ulong guestAddress, SafeFileHandle file, long fileOffset, ulong size)
    {
        ArgumentNullException.ThrowIfNull(file);
        ValidateGeometry(guestAddress, size);
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("Mapping a file descriptor as guest memory needs mmap (Linux).");
        }

        return MapFileCore(guestAddress, file, fileOffset, size, writable: true, ownsHandle: false);
    }

    /// <summary>
    /// Wraps host memory the hypervisor already owns (for example the memory it registered with
    /// KVM). The region never frees it; the hypervisor must keep it mapped for the region's lifetime.
    /// </summary>
    /// <param name="guestAddress">The region's guest-physical base.</param>
    /// <param name="hostAddress">Where the memory lives in this process.</param>
    /// <param name="size">Size in bytes; not zero.</param>
    public static GuestMemoryRegion FromHostMemory(ulong guestAddress, nint hostAddress, ulong size)
    {
        ValidateGeometry(guestAddress, size);
        if (hostAddress == 0)
        {
            throw new ArgumentException("Host address must not be null.", nameof(hostAddress));
        }

        CheckCongruence(guestAddress, hostAddress);
        return new GuestMemoryRegion(guestAddress, size, hostAddress, mappingBase: 0, mappingLength: 0, sharedFile: null, guarded: false);
    }

    /// <summary>Unmaps memory this region allocated or mapped; memory from <see cref="FromHostMemory"/> is left alone.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (_mappingBase != 0)
        {
            if (_mappingLength == 0)
            {
                FreeUnguarded(_mappingBase);
            }
            else
            {
                _ = LinuxMemory.munmap(_mappingBase, _mappingLength);
            }
        }

        _sharedFile?.Dispose();
    }

    /// <summary>Whether [<paramref name="address"/>, +<paramref name="length"/>) lies wholly inside this region.</summary>
    internal bool Contains(ulong address, ulong length)
    {
        ulong offset = address - GuestAddress;
        // One unsigned compare covers "address below the base" (offset wraps to a huge value).
        return offset < Size ? length <= Size - offset : (length == 0 && offset == Size);
    }

    private static GuestMemoryRegion MapFileCore(ulong guestAddress, SafeFileHandle file, long fileOffset, ulong size, bool writable, bool ownsHandle)
    {
        if (fileOffset < 0 || fileOffset % Environment.SystemPageSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(fileOffset), "File offset must be a non-negative multiple of the page size.");
        }

        bool added = false;
        file.DangerousAddRef(ref added);
        try
        {
            int prot = LinuxMemory.ProtRead | (writable ? LinuxMemory.ProtWrite : 0);
            nint mapping = LinuxMemory.mmap(0, (nuint)size, prot, LinuxMemory.MapShared, (int)file.DangerousGetHandle(), fileOffset);
            if (mapping == LinuxMemory.s_mapFailed)
            {
                throw LinuxMemory.Failure("mmap");
            }

            if (((ulong)mapping % RequiredCongruence) != (guestAddress % RequiredCongruence))
            {
                _ = LinuxMemory.munmap(mapping, (nuint)size);
                CheckCongruence(guestAddress, mapping);
            }

            return new GuestMemoryRegion(guestAddress, size, mapping, mapping, (nuint)size, ownsHandle ? file : null, guarded: false);
        }
        finally
        {
            if (added)
            {
                file.DangerousRelease();
            }
        }
    }

    private static unsafe GuestMemoryRegion AllocateUnguarded(ulong guestAddress, ulong size)
    {
        // SAFETY: AlignedAlloc returns a block of exactly `size` bytes (or throws); it is zeroed
        // before anyone sees it and freed only by Dispose, which runs once.
        void* block = NativeMemory.AlignedAlloc((nuint)size, 4096);
        NativeMemory.Clear(block, (nuint)size);
        nint host = (nint)block;
        return new GuestMemoryRegion(guestAddress, size, host, host, mappingLength: 0, sharedFile: null, guarded: false);
    }

    private static unsafe void FreeUnguarded(nint block)
    {
        // SAFETY: `block` came from NativeMemory.AlignedAlloc in AllocateUnguarded and Dispose
        // guarantees this runs at most once.
        NativeMemory.AlignedFree((void*)block);
    }

    private static void ValidateGeometry(ulong guestAddress, ulong size)
    {
        if (size == 0 || size > (ulong)nint.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(size), "Region size must be non-zero and addressable.");
        }

        if (guestAddress + size < guestAddress)
        {
            throw new ArgumentOutOfRangeException(nameof(size), "Region wraps the 64-bit guest address space.");
        }
    }

    private static void CheckCongruence(ulong guestAddress, nint host)
    {
        if (((ulong)host % RequiredCongruence) != (guestAddress % RequiredCongruence))
        {
            throw new ArgumentException($"Host and guest addresses must be congruent modulo {RequiredCongruence} so aligned guest accesses stay atomic.");
        }
    }

    private static nuint RoundUp(nuint value, nuint multiple) => (value + multiple - 1) / multiple * multiple;
}
