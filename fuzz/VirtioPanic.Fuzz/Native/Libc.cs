using System.Runtime.InteropServices;

namespace VirtioPanic.Fuzz.Native;

// The few system calls the vhost-user target's fake front end needs beyond LinuxIo's.
internal static partial class Libc
{
    internal const int ShutWrite = 1;

    [LibraryImport("libc", EntryPoint = "shutdown", SetLastError = true)]
    internal static partial int Shutdown(int fd, int how);
}
