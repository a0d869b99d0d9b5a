namespace VirtioPanic.VhostUser.Tests.Protocol;

/// <summary>Counts this process's open descriptors and guest-memory mappings, for leak checks.</summary>
internal static class FdCounter
{
    internal static int OpenFds() => Directory.GetFileSystemEntries("/proc/self/fd").Length;

    /// <summary>Mappings of memfds named <paramref name="name"/> (shown as <c>/memfd:NAME (deleted)</c>).</summary>
    internal static int MemfdMappings(string name) =>
        File.ReadAllLines("/proc/self/maps").Count(l => l.Contains("/memfd:" + name, StringComparison.Ordinal));
}
