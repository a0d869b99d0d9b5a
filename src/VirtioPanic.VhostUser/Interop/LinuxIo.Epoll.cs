using System.Runtime.InteropServices;
using System.Text;

namespace VirtioPanic.VhostUser.Interop;

// epoll (epoll_create1, epoll_ctl, epoll_wait; man 7 epoll) and a listening AF_UNIX stream socket
// on raw descriptors (socket, bind, listen, accept4; man 7 unix), for the one event loop that
// serves every back end (Loop/VhostUserEventLoop.cs): no Socket object and no accept task per
// device.
//
// struct epoll_event (include/uapi/linux/eventpoll.h) is { __poll_t events; __u64 data; } with
// EPOLL_PACKED, which is __attribute__((packed)) on x86-64 only: 12 bytes with data at offset 4
// there, 16 bytes with data at offset 8 elsewhere (arm64). Callers see EpollEvent, never the raw
// layout. struct sockaddr_un (include/uapi/linux/un.h) is { sa_family_t sun_family (u16);
// char sun_path[108]; }.
internal static partial class LinuxIo
{
    internal const uint EpollIn = 0x001;
    internal const uint EpollOut = 0x004;
    internal const uint EpollErr = 0x008;
    internal const uint EpollHup = 0x010;
    internal const uint EpollRdHup = 0x2000;
    internal const uint EpollEt = 0x8000_0000;

    internal const int EpollCtlAdd = 1;
    internal const int EpollCtlDel = 2;
    internal const int EpollCtlMod = 3;
    internal const int EpollCloexec = 0x80000;

    internal const int SockNonblock = 0x800;

    private const int SunPathSize = 108;
    private const int SockAddrUnSize = 2 + SunPathSize;

    private static readonly bool s_packedEpollEvent = RuntimeInformation.ProcessArchitecture == Architecture.X64;
    private static readonly int s_epollEventSize = s_packedEpollEvent ? 12 : 16;
    private static readonly int s_epollDataOffset = s_packedEpollEvent ? 4 : 8;

    // The largest batch one epoll_wait returns (EpollWait's raw buffer is on the stack).
    internal const int MaxEpollBatch = 256;

    /// <summary>One ready descriptor: its events and the 64-bit token it was registered with.</summary>
    internal struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    private static partial int EpollCreate1Native(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    // SAFETY: raw libc entry point; only EpollCtl calls it, with a pointer to a stack block of s_epollEventSize bytes or null.
    private static unsafe partial int EpollCtlNative(int epoll, int operation, int fd, byte* eventBlock);

    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    // SAFETY: raw libc entry point; only EpollWait calls it, with a stack block of maxEvents * s_epollEventSize bytes.
    private static unsafe partial int EpollWaitNative(int epoll, byte* events, int maxEvents, int timeoutMilliseconds);

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    private static partial int SocketNative(int domain, int type, int protocol);

    [LibraryImport("libc", EntryPoint = "bind", SetLastError = true)]
    // SAFETY: raw libc entry point; only UnixListen calls it, with a SockAddrUnSize-byte stack block and its used length.
    private static unsafe partial int BindNative(int fd, byte* address, uint addressLength);

    [LibraryImport("libc", EntryPoint = "listen", SetLastError = true)]
    private static partial int ListenNative(int fd, int backlog);

    // The peer's address is not wanted: both pointers are null (accept4(2) allows that).
    [LibraryImport("libc", EntryPoint = "accept4", SetLastError = true)]
    private static partial int Accept4Native(int fd, nint address, nint addressLength, int flags);

    /// <summary>epoll_create1(EPOLL_CLOEXEC); the descriptor or -errno.</summary>
    internal static int EpollCreate()
    {
        int fd = EpollCreate1Native(EpollCloexec);
        return fd < 0 ? -Marshal.GetLastPInvokeError() : fd;
    }

    /// <summary>epoll_ctl ADD, MOD or DEL (<paramref name="events"/> and <paramref name="data"/> unused for DEL); 0 or -errno.</summary>
    internal static unsafe int EpollCtl(int epoll, int operation, int fd, uint events, ulong data)
    {
        // SAFETY: a 16-byte stack block holds one epoll_event in either layout (12 or 16 bytes);
        // both writes are inside it, and the kernel reads s_epollEventSize <= 16 bytes.
        byte* block = stackalloc byte[16];
        new Span<byte>(block, 16).Clear();
        *(uint*)block = events;
        // SAFETY: offset 4 or 8 plus 8 bytes is at most 16; the x86-64 offset is unaligned, hence WriteUnaligned.
        System.Runtime.CompilerServices.Unsafe.WriteUnaligned(block + s_epollDataOffset, data);
        int result = EpollCtlNative(epoll, operation, fd, operation == EpollCtlDel ? null : block);
        return result < 0 ? -Marshal.GetLastPInvokeError() : 0;
    }

    /// <summary>epoll_wait into <paramref name="events"/> (at most <see cref="MaxEpollBatch"/>); the count, 0 on timeout, or -errno (EINTR included).</summary>
    internal static unsafe int EpollWait(int epoll, Span<EpollEvent> events, int timeoutMilliseconds)
    {
        int max = Math.Min(events.Length, MaxEpollBatch);
        // SAFETY: the raw block is max * s_epollEventSize bytes on this stack frame (at most
        // 256 * 16 = 4 KiB); the kernel fills at most max entries, and each read below is inside
        // the n <= max entries it reported.
        byte* raw = stackalloc byte[max * s_epollEventSize];
        int n = EpollWaitNative(epoll, raw, max, timeoutMilliseconds);
        if (n < 0)
        {
            return -Marshal.GetLastPInvokeError();
        }

        for (int i = 0; i < n; i++)
        {
            byte* entry = raw + (i * s_epollEventSize);
            // SAFETY: entry lies inside the block (i < n <= max); the data word may be unaligned (x86-64).
            events[i] = new EpollEvent { Events = *(uint*)entry, Data = System.Runtime.CompilerServices.Unsafe.ReadUnaligned<ulong>(entry + s_epollDataOffset) };
        }

        return n;
    }

    /// <summary>
    /// A non-blocking, close-on-exec AF_UNIX stream socket bound to <paramref name="path"/> and
    /// listening; the descriptor, or -errno (ENAMETOOLONG when the path does not fit sun_path).
    /// </summary>
    // SAFETY: touches only the sockaddr_un stack block it allocates (see the comment at its use).
    internal static unsafe int UnixListen(string path, int backlog)
    {
        int length = Encoding.UTF8.GetByteCount(path);
        if (length >= SunPathSize)
        {
            return -Enametoolong;
        }

        int fd = SocketNative(AfUnix, SockStream | SockNonblock | SockCloexec, 0);
        if (fd < 0)
        {
            return -Marshal.GetLastPInvokeError();
        }

        // SAFETY: the block is SockAddrUnSize bytes: 2 for the family, then the path (length <
        // 108 bytes, checked above) and its NUL within the 108-byte sun_path.
        byte* address = stackalloc byte[SockAddrUnSize];
        var block = new Span<byte>(address, SockAddrUnSize);
        block.Clear();
        *(ushort*)address = AfUnix;
        Encoding.UTF8.GetBytes(path, block[2..]);
        if (BindNative(fd, address, (uint)(2 + length + 1)) != 0 || ListenNative(fd, backlog) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _ = Close(fd);
            return -errno;
        }

        return fd;
    }

    /// <summary>accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; the connection's descriptor or -errno (EAGAIN: none pending).</summary>
    internal static int Accept(int listener)
    {
        int fd = Accept4Native(listener, 0, 0, SockNonblock | SockCloexec);
        return fd < 0 ? -Marshal.GetLastPInvokeError() : fd;
    }
}
