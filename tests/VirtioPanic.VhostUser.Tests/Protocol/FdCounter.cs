namespace VirtioPanic.VhostUser.Tests.Protocol;

/// <summary>Counts this process's open descriptors and guest-memory mappings, for leak checks.</summary>
/// <remarks>
/// Only the kinds the vhost-user back-end receives or creates are counted (sockets, eventfds,
/// memfds): the runtime opens and closes its own descriptors (epoll, pipes, timers, files) on
/// background threads at any time, which made whole-process counts flaky by one now and then.
/// </remarks>
internal static class FdCounter
{
    internal static int OpenFds()
    {
        int count = 0;
        foreach (string entry in Directory.GetFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(entry).LinkTarget;
            }
            catch (IOException)
            {
                continue;   // closed while we looked
            }

            if (target is not null
                && (target.StartsWith("socket:", StringComparison.Ordinal)
                    || target.Contains("[eventfd]", StringComparison.Ordinal)
                    || target.StartsWith("/memfd:", StringComparison.Ordinal)))
            {
                count++;
            }
        }

        return count;
    }

    /// <summary>
    /// <see cref="OpenFds"/> once it equals <paramref name="expected"/>, or after
    /// <paramref name="milliseconds"/>: a connection's descriptors are closed by the back-end's
    /// connection task, a moment after the peer sees the socket close.
    /// </summary>
    internal static int OpenFdsSettled(int expected, int milliseconds = 5000)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int count;
        while ((count = OpenFds()) != expected && clock.ElapsedMilliseconds < milliseconds)
        {
            Thread.Sleep(20);
        }

        return count;
    }

    /// <summary>Mappings of memfds named <paramref name="name"/> (shown as <c>/memfd:NAME (deleted)</c>).</summary>
    internal static int MemfdMappings(string name) =>
        File.ReadAllLines("/proc/self/maps").Count(l => l.Contains("/memfd:" + name, StringComparison.Ordinal));
}
