using System.Runtime.InteropServices;

namespace VirtioPanic.VhostUser.Interop;

// The libc calls the vhost-user back end needs and .NET does not expose: recvmsg/sendmsg with
// SCM_RIGHTS (file descriptors travel with vhost-user messages), epoll (the one event loop of
// every back end, Loop/VhostUserEventLoop.cs) and poll over raw descriptors, a listening Unix
// socket with non-blocking accept4, eventfd (kick and call notifications), plain read/write on
// them, fcntl for O_NONBLOCK and memfd seals, and statx (the size of a file a front end maps
// guest memory from). This is the LinuxIo.Epoll.cs partial's other half.
//
// This folder is the only place in the project where unsafe code is allowed (a guard test checks
// it). Every caller outside passes spans and plain descriptor numbers; pointers never escape.
// Constants are the Linux generic ABI values (x86-64 and arm64 agree on all of them); the struct
// layouts below are the LP64 ones.
internal static partial class LinuxIo
{
    internal const int Eintr = 4;
    internal const int Eagain = 11;
    internal const int Ebadf = 9;
    internal const int Enoent = 2;
    internal const int Eacces = 13;
    internal const int Emfile = 24;
    internal const int Enfile = 23;
    internal const int Enametoolong = 36;
    internal const int Eaddrinuse = 98;
    internal const int Econnaborted = 103;

    internal const short PollIn = 0x001;
    internal const short PollOut = 0x004;
    internal const short PollErr = 0x008;
    internal const short PollHup = 0x010;
    internal const short PollNval = 0x020;

    internal const int MsgCtrunc = 0x8;
    internal const int MsgDontWait = 0x40;
    internal const int MsgNoSignal = 0x4000;
    internal const int MsgCmsgCloexec = 0x40000000;

    internal const int SolSocket = 1;
    internal const int ScmRights = 1;

    internal const int EfdCloexec = 0x80000;
    internal const int EfdNonblock = 0x800;

    internal const int FGetFl = 3;
    internal const int FSetFl = 4;
    internal const int ONonblock = 0x800;

    // fcntl(F_GET_SEALS) and the memfd seal bits (include/uapi/linux/fcntl.h: F_LINUX_SPECIFIC_BASE
    // 1024 + 10; F_SEAL_SEAL 1, F_SEAL_SHRINK 2, F_SEAL_GROW 4, F_SEAL_WRITE 8).
    internal const int FAddSeals = 1033;
    internal const int FGetSeals = 1034;
    internal const uint MfdCloexec = 0x1;
    internal const uint MfdAllowSealing = 0x2;
    internal const int SealSeal = 0x1;
    internal const int SealShrink = 0x2;
    internal const int SealGrow = 0x4;
    internal const int SealWrite = 0x8;

    internal const int AfUnix = 1;
    internal const int SockStream = 1;
    internal const int SockCloexec = 0x80000;

    // The most descriptors one message may carry: SET_MEM_TABLE with the 8 regions of the
    // baseline protocol. Room for more is reserved so that an oversupply is seen (and closed)
    // instead of being silently dropped with MSG_CTRUNC.
    internal const int MaxFdsPerMessage = 8;
    private const int FdReceiveCapacity = 16;

    // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } followed by data
    // aligned to sizeof(size_t).
    private const int CmsgHeaderSize = 16;
    private const int ControlBufferSize = CmsgHeaderSize + (FdReceiveCapacity * sizeof(int));

    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public nint Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MsgHdr
    {
        public nint Name;
        public uint NameLength;
        public nint Iov;
        public nuint IovLength;
        public nint Control;
        public nuint ControlLength;
        public int Flags;
    }

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    // SAFETY: raw libc entry point; only the wrappers below call it, with pinned buffers and their exact lengths.
    private static unsafe partial nint RecvMsgNative(int fd, MsgHdr* message, int flags);

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    // SAFETY: raw libc entry point; only the wrappers below call it, with pinned buffers and their exact lengths.
    private static unsafe partial nint SendMsgNative(int fd, MsgHdr* message, int flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    // SAFETY: raw libc entry point; only the wrappers below call it, with pinned buffers and their exact lengths.
    private static unsafe partial int PollNative(PollFd* fds, nuint count, int timeoutMilliseconds);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    // SAFETY: raw libc entry point; only the wrappers below call it, with pinned buffers and their exact lengths.
    private static unsafe partial nint ReadNative(int fd, void* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    // SAFETY: raw libc entry point; only the wrappers below call it, with pinned buffers and their exact lengths.
    private static unsafe partial nint WriteNative(int fd, void* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    internal static partial int EventFd(uint initialValue, int flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int FcntlNative(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true)]
    // SAFETY: raw libc entry point; only FileSizeAndType calls it, with a NUL path and a StatxSize-byte buffer.
    private static unsafe partial int StatxNative(int dirFd, byte* path, int flags, uint mask, byte* buffer);

    // memfd_create and ftruncate: for test front ends that make guest memory of a chosen size and
    // sealing (the back end itself only receives memory files).
    [LibraryImport("libc", EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int MemFdCreate(string name, uint flags);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    internal static partial int FTruncate(int fd, long length);

    [LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
    // SAFETY: raw libc entry point; only the wrappers below call it, with pinned buffers and their exact lengths.
    private static unsafe partial int SocketPairNative(int domain, int type, int protocol, int* fds);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    internal static partial int Close(int fd);

    /// <summary>
    /// Receives up to <paramref name="buffer"/>.Length bytes and any descriptors sent with them.
    /// Returns the byte count (0 at end of stream) or -errno. Received descriptors are close-on-exec;
    /// the caller owns them, including when the result is an error after some were received.
    /// </summary>
    internal static unsafe int ReceiveWithFds(int socket, Span<byte> buffer, Span<int> fds, out int fdCount, out bool truncated, bool dontWait)
    {
        // SAFETY: the control block is a stack allocation of ControlBufferSize bytes, cleared and
        // described to the kernel with exactly that length; it is parsed only within that length.
        fdCount = 0;
        truncated = false;
        byte* control = stackalloc byte[ControlBufferSize];
        new Span<byte>(control, ControlBufferSize).Clear();

        // SAFETY: `buffer` is pinned for the call, the iovec describes exactly its length, and the
        // control buffer is a stack block of ControlBufferSize bytes that outlives the call.
        fixed (byte* data = buffer)
        {
            var iov = new IoVec { Base = (nint)data, Length = (nuint)buffer.Length };
            var message = new MsgHdr
            {
                Iov = (nint)(&iov),
                IovLength = 1,
                Control = (nint)control,
                ControlLength = ControlBufferSize,
            };

            nint received = RecvMsgNative(socket, &message, MsgCmsgCloexec | (dontWait ? MsgDontWait : 0));
            if (received < 0)
            {
                return -Marshal.GetLastPInvokeError();
            }

            truncated = (message.Flags & MsgCtrunc) != 0;
            fdCount = ParseRights(control, (int)Math.Min(message.ControlLength, (nuint)ControlBufferSize), fds, ref truncated);
            return (int)received;
        }
    }

    /// <summary>Sends <paramref name="data"/> with <paramref name="fds"/> as SCM_RIGHTS; returns bytes sent or -errno.</summary>
    internal static unsafe int SendWithFds(int socket, ReadOnlySpan<byte> data, ReadOnlySpan<int> fds, bool dontWait)
    {
        // SAFETY: see the blocks below; nothing outlives this frame.
        if (fds.Length > FdReceiveCapacity)
        {
            throw new ArgumentOutOfRangeException(nameof(fds));
        }

        byte* control = stackalloc byte[ControlBufferSize];
        int controlLength = 0;
        if (!fds.IsEmpty)
        {
            controlLength = CmsgHeaderSize + (fds.Length * sizeof(int));
            // SAFETY: controlLength <= ControlBufferSize (fds.Length <= FdReceiveCapacity), and the
            // header fields are written at their LP64 offsets 0, 8 and 12.
            *(nuint*)control = (nuint)controlLength;
            *(int*)(control + 8) = SolSocket;
            *(int*)(control + 12) = ScmRights;
            fds.CopyTo(new Span<int>(control + CmsgHeaderSize, fds.Length));
        }

        // SAFETY: `data` is pinned for the call and the iovec describes exactly its length; the
        // control block lives on this stack frame for the duration of sendmsg.
        fixed (byte* bytes = data)
        {
            var iov = new IoVec { Base = (nint)bytes, Length = (nuint)data.Length };
            var message = new MsgHdr
            {
                Iov = (nint)(&iov),
                IovLength = 1,
                Control = controlLength == 0 ? 0 : (nint)control,
                ControlLength = (nuint)controlLength,
            };

            nint sent = SendMsgNative(socket, &message, MsgNoSignal | (dontWait ? MsgDontWait : 0));
            return sent < 0 ? -Marshal.GetLastPInvokeError() : (int)sent;
        }
    }

    /// <summary>poll(2); returns the number of ready descriptors, 0 on timeout, or -errno.</summary>
    internal static unsafe int Poll(Span<PollFd> fds, int timeoutMilliseconds)
    {
        // SAFETY: the span is pinned for the call and its length is passed as the count.
        fixed (PollFd* p = fds)
        {
            int result = PollNative(p, (nuint)fds.Length, timeoutMilliseconds);
            return result < 0 ? -Marshal.GetLastPInvokeError() : result;
        }
    }

    /// <summary>Reads into <paramref name="buffer"/>; returns bytes read or -errno.</summary>
    internal static unsafe int Read(int fd, Span<byte> buffer)
    {
        // SAFETY: the span is pinned for the call and its length bounds the kernel's write.
        fixed (byte* p = buffer)
        {
            nint result = ReadNative(fd, p, (nuint)buffer.Length);
            return result < 0 ? -Marshal.GetLastPInvokeError() : (int)result;
        }
    }

    /// <summary>Writes <paramref name="buffer"/>; returns bytes written or -errno.</summary>
    internal static unsafe int Write(int fd, ReadOnlySpan<byte> buffer)
    {
        // SAFETY: the span is pinned for the call and its length bounds the kernel's read.
        fixed (byte* p = buffer)
        {
            nint result = WriteNative(fd, p, (nuint)buffer.Length);
            return result < 0 ? -Marshal.GetLastPInvokeError() : (int)result;
        }
    }

    /// <summary>Sets O_NONBLOCK; returns 0 or -errno.</summary>
    internal static int SetNonBlocking(int fd)
    {
        int flags = FcntlNative(fd, FGetFl, 0);
        if (flags < 0)
        {
            return -Marshal.GetLastPInvokeError();
        }

        return FcntlNative(fd, FSetFl, flags | ONonblock) < 0 ? -Marshal.GetLastPInvokeError() : 0;
    }

    // struct statx (include/uapi/linux/stat.h) is the same on every architecture, unlike struct
    // stat: stx_mode is a u16 at offset 28, stx_size a u64 at offset 40; the struct is 256 bytes.
    private const int StatxSize = 256;
    private const int AtEmptyPath = 0x1000;
    private const uint StatxType = 0x1;
    private const uint StatxSizeMask = 0x200;
    private const int SIfMt = 0xf000;
    private const int SIfReg = 0x8000;

    /// <summary>
    /// The size of the file behind <paramref name="fd"/> and whether it is a regular file
    /// (memfds and tmpfs/hugetlbfs files are); 0 or -errno. Used to check that a memory region
    /// a front end describes lies inside its file before it is mapped: a mapping past the end of
    /// a file raises SIGBUS on first access, which kills the process.
    /// </summary>
    // SAFETY: touches only the two stack blocks it allocates (see the comments at each use).
    internal static unsafe int FileSizeAndType(int fd, out ulong size, out bool regular)
    {
        // SAFETY: only stack blocks of fixed size are used, each within its bounds (see below).
        size = 0;
        regular = false;
        byte* buffer = stackalloc byte[StatxSize];
        byte* emptyPath = stackalloc byte[1];
        emptyPath[0] = 0;
        // SAFETY: buffer is a StatxSize-byte stack block (the kernel writes at most sizeof(struct
        // statx) = 256 bytes); emptyPath is a NUL-terminated empty string for AT_EMPTY_PATH.
        if (StatxNative(fd, emptyPath, AtEmptyPath, StatxType | StatxSizeMask, buffer) != 0)
        {
            return -Marshal.GetLastPInvokeError();
        }

        // SAFETY: both reads are inside the StatxSize-byte block filled above.
        ushort mode = *(ushort*)(buffer + 28);
        size = *(ulong*)(buffer + 40);
        regular = (mode & SIfMt) == SIfReg;
        return 0;
    }

    /// <summary>fcntl(F_GET_SEALS): the seal bits of a memfd (or tmpfs file), or -errno (EINVAL: the file cannot be sealed).</summary>
    internal static int GetSeals(int fd)
    {
        int seals = FcntlNative(fd, FGetSeals, 0);
        return seals < 0 ? -Marshal.GetLastPInvokeError() : seals;
    }

    /// <summary>fcntl(F_ADD_SEALS); 0 or -errno.</summary>
    internal static int AddSeals(int fd, int seals) => FcntlNative(fd, FAddSeals, seals) < 0 ? -Marshal.GetLastPInvokeError() : 0;

    /// <summary>A connected pair of close-on-exec AF_UNIX stream sockets (the back-end request channel in tests).</summary>
    internal static unsafe (int First, int Second) SocketPair()
    {
        int* fds = stackalloc int[2];
        // SAFETY: fds points at two ints on this stack frame, which socketpair fills.
        if (SocketPairNative(AfUnix, SockStream | SockCloexec, 0, fds) != 0)
        {
            throw new InvalidOperationException($"socketpair failed: errno {Marshal.GetLastPInvokeError()}");
        }

        return (fds[0], fds[1]);
    }

    // SAFETY: `control` points at a block of at least `controlLength` bytes (ReceiveWithFds caps
    // it at ControlBufferSize); every read below is checked against controlLength first.
    private static unsafe int ParseRights(byte* control, int controlLength, Span<int> fds, ref bool truncated)
    {
        int count = 0;
        int offset = 0;
        // Walk every cmsghdr the kernel filled in; each SCM_RIGHTS one carries (len - 16) / 4 fds.
        // Descriptors beyond what the caller can take are closed here so none leaks.
        while (offset + CmsgHeaderSize <= controlLength)
        {
            // SAFETY: offset + 16 <= controlLength <= ControlBufferSize, so the header read is in bounds.
            nuint length = *(nuint*)(control + offset);
            int level = *(int*)(control + offset + 8);
            int type = *(int*)(control + offset + 12);
            if (length < CmsgHeaderSize || length > (nuint)(controlLength - offset))
            {
                break;
            }

            if (level == SolSocket && type == ScmRights)
            {
                int n = (int)(length - CmsgHeaderSize) / sizeof(int);
                for (int i = 0; i < n; i++)
                {
                    // SAFETY: i < n and 16 + 4n <= length <= controlLength - offset.
                    int fd = *(int*)(control + offset + CmsgHeaderSize + (i * sizeof(int)));
                    if (count < fds.Length)
                    {
                        fds[count++] = fd;
                    }
                    else
                    {
                        _ = Close(fd);
                        truncated = true;
                    }
                }
            }

            // CMSG_NXTHDR: the next header starts at the current length rounded up to 8.
            offset += (int)((length + 7) & ~(nuint)7);
        }

        return count;
    }
}
