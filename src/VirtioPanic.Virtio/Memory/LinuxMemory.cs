using System.Runtime.InteropServices;

namespace VirtioPanic.Virtio.Memory;

// The minimal libc surface guest memory needs: anonymous and shared mappings, guard pages and
// memfd. Every caller sits in this folder, which is the only place unsafe code is allowed.
// Constants are the Linux generic ABI values (asm-generic/mman-common.h), identical on x86-64
// and arm64.
internal static partial class LinuxMemory
{
    internal const int ProtNone = 0x0;
    internal const int ProtRead = 0x1;
    internal const int ProtWrite = 0x2;
    internal const int MapShared = 0x01;
    internal const int MapPrivate = 0x02;
    internal const int MapFixed = 0x10;
    internal const int MapAnonymous = 0x20;
    internal const int MapNoReserve = 0x4000;
    internal const uint MfdCloexec = 0x1;
    internal static readonly nint s_mapFailed = -1;

    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int munmap(nint addr, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int mprotect(nint addr, nuint length, int prot);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int memfd_create(string name, uint flags);

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int ftruncate(int fd, long length);

    internal static InvalidOperationException Failure(string call) =>
        new($"{call} failed: errno {Marshal.GetLastPInvokeError()} ({Marshal.GetLastPInvokeErrorMessage()})");
}
