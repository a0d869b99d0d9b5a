using Microsoft.Extensions.Options;
using VirtioPanic.Hosting;

namespace VirtioPanic.Benchmarks.Hosting;

// Shared setup: a policy service (the manager the hosted service runs) with its journal on tmpfs
// when the machine has one (/dev/shm), so the numbers measure the service, not the disk's fsync;
// the journal still writes and fsyncs every record.
internal static class HostingBench
{
    internal static string JournalDirectory()
    {
        string root = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        string directory = Path.Combine(root, "virtiopanic-bench-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        return directory;
    }

    internal static PolicyService Manager(string directory, DevicePolicy policy, JournalDurability durability = JournalDurability.FlushBeforeAction, bool inline = false) =>
        new(Options.Create(new VirtioPanicOptions
        {
            JournalPath = Path.Combine(directory, "journal.jsonl"),
            DumpDirectory = Path.Combine(directory, "dumps"),
            JournalDurability = durability,
            InlinePanicHandling = inline,
            Policy = policy,
        }), TimeProvider.System, logger: null, meterFactory: null);

    internal static void Delete(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
