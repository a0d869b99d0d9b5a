using System.Diagnostics;
using System.Globalization;
using VirtioPanic.Device;
using VirtioPanic.Hosting;

namespace VirtioPanic.Benchmarks.Hosting;

// `--storm [devices] [tmpfs|disk] [inline] [after] [warm]` (defaults 10000, tmpfs, pumps, FlushBeforeAction, cold): every device's guest panics at once
// (panic_events written from 100 vCPU threads, each for its share of the devices, released
// together) under one policy service with the default durability (FlushBeforeAction: each panic
// is journaled on acceptance before the write returns, its decision before the action, its
// outcome after). Reports, per panic, the time from its write to its IVmControl call, and from
// the storm's start; how many panics were acted on (all must be), and how many journal commits
// (one write and at most one fsync each) carried the three records per panic.
internal static class StormRun
{

    internal static int Run(string[] args)
    {
        int devices = args.Length > 0 && int.TryParse(args[0], out int d) ? d : 10_000;
        bool disk = args.Length > 1 && args[1] == "disk";
        bool inline = args.Contains("inline");
        string? threadsArg = args.FirstOrDefault(a => a.StartsWith("threads=", StringComparison.Ordinal));
        int threads = threadsArg is null ? 100 : int.Parse(threadsArg.AsSpan(8), CultureInfo.InvariantCulture);
        JournalDurability durability = args.Contains("after") ? JournalDurability.FlushAfterAction : JournalDurability.FlushBeforeAction;
        string directory = disk ? DiskDirectory() : HostingBench.JournalDirectory();
        var vm = new RecordingVmControl();
        long[] called = new long[devices];
        long done = 0;
        vm.OnCall = (context, timestamp) =>
        {
            int index = int.Parse(context.DeviceId.AsSpan(2), CultureInfo.InvariantCulture);
            if (Interlocked.CompareExchange(ref called[index], timestamp, 0) == 0)
            {
                Interlocked.Increment(ref done);
            }
        };

        using PolicyService manager = HostingBench.Manager(directory, new DevicePolicy { OnPanic = PanicAction.Destroy, StormThreshold = 0 }, durability, inline);
        manager.Start();
        var watchdogs = new WatchdogDevice[devices];
        var options = new WatchdogDeviceOptions();
        for (int i = 0; i < devices; i++)
        {
            options.DeviceId = "vm" + i.ToString(CultureInfo.InvariantCulture);
            watchdogs[i] = new WatchdogDevice(options);
            manager.Attach(watchdogs[i], vm);
        }

        if (args.Contains("warm"))
        {
            // The same path once per device of a small separate set first, so the storm does not pay for JIT compilation.
            var warm = new WatchdogDevice[200];
            for (int i = 0; i < warm.Length; i++)
            {
                options.DeviceId = "warm" + i.ToString(CultureInfo.InvariantCulture);
                warm[i] = new WatchdogDevice(options);
                manager.Attach(warm[i], new RecordingVmControl());
            }

            for (int round = 0; round < 5; round++)
            {
                foreach (WatchdogDevice device in warm)
                {
                    device.WriteConfig(8, [1, 0, 0, 0]);
                }

                Thread.Sleep(300);
            }
        }

        VirtioPanic.Hosting.Journal.EventJournal? journalFile = manager.Journal;
        long commitsBefore = journalFile?.Commits ?? 0;
        long[] written = new long[devices];
        using var go = new ManualResetEventSlim();
        var vcpus = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int first = t * devices / threads;
            int last = (t + 1) * devices / threads;
            vcpus[t] = new Thread(() =>
            {
                go.Wait();
                for (int i = first; i < last; i++)
                {
                    written[i] = Stopwatch.GetTimestamp();
                    watchdogs[i].WriteConfig(8, [1, 0, 0, 0]);
                }
            })
            { IsBackground = true, Name = "vcpu" + t.ToString(CultureInfo.InvariantCulture) };
            vcpus[t].Start();
        }

        Thread.Sleep(200);
        TimeSpan cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        int gen0Before = GC.CollectionCount(0);
        TimeSpan pauseBefore = GC.GetTotalPauseDuration();
        long start = Stopwatch.GetTimestamp();
        go.Set();
        var wait = Stopwatch.StartNew();
        while (Interlocked.Read(ref done) < devices && wait.Elapsed < TimeSpan.FromSeconds(120))
        {
            Thread.Sleep(5);
        }

        long finished = Stopwatch.GetTimestamp();
        TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        int gen0 = GC.CollectionCount(0) - gen0Before;
        TimeSpan pause = GC.GetTotalPauseDuration() - pauseBefore;
        foreach (Thread vcpu in vcpus)
        {
            vcpu.Join();
        }

        long acted = Interlocked.Read(ref done);
        var perPanic = new List<double>(devices);
        var fromStart = new List<double>(devices);
        for (int i = 0; i < devices; i++)
        {
            if (called[i] != 0)
            {
                perPanic.Add(Stopwatch.GetElapsedTime(written[i], called[i]).TotalMilliseconds);
                fromStart.Add(Stopwatch.GetElapsedTime(start, called[i]).TotalMilliseconds);
            }
        }

        manager.StopAsync().GetAwaiter().GetResult();
        long commits = (journalFile?.Commits ?? commitsBefore) - commitsBefore;
        string journal = Path.Combine(directory, "journal.jsonl");
        int outcomes = Directory.GetFiles(directory, "journal.jsonl*").Sum(f => File.ReadLines(f).Count(l => l.Contains("\"type\":\"outcome\"", StringComparison.Ordinal)));
        Console.WriteLine($"{devices} simultaneous panics, journal on {(disk ? "disk" : "tmpfs")} ({journal}), {threads} vCPU threads, {Environment.ProcessorCount} CPUs, handled {(inline ? "inline (InlinePanicHandling)" : "by the service's pumps (default)")}, {durability}, {(args.Contains("warm") ? "after a warm-up of 1 000 panics" : "cold (the storm is the process's first panics)")}");
        Console.WriteLine($"  acted on: {acted} of {devices} ({devices - acted} dropped); outcomes journaled: {outcomes}; journal commits during the storm: {commits} for {3 * devices} records");
        Console.WriteLine("  panic write -> IVmControl call: " + Percentiles.Describe([.. perPanic], "ms"));
        Console.WriteLine("  storm start -> IVmControl call: " + Percentiles.Describe([.. fromStart], "ms"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  all acted on {Stopwatch.GetElapsedTime(start, finished).TotalMilliseconds:0} ms after the storm started; process CPU meanwhile {cpu.TotalMilliseconds:0} ms ({cpu.TotalMicroseconds / devices:0} µs per panic); allocated {allocated / devices} B per panic, {gen0} gen0 GCs, {pause.TotalMilliseconds:0} ms paused"));
        foreach (WatchdogDevice device in watchdogs)
        {
            device.Dispose();
        }

        HostingBench.Delete(directory);
        return acted == devices ? 0 : 1;
    }

    private static string DiskDirectory()
    {
        string directory = Path.Combine(Path.GetTempPath(), "virtiopanic-bench-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        return directory;
    }
}
