using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Hosting;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Hosting;

// `--soak [devices] [seconds]` (defaults 10000, 60): many baseline watchdog devices in one
// process under one policy service, each pinged once per second by a heartbeat on its watchdogq
// (pings spread evenly over each second by one "guest" thread). Reports host memory per device,
// CPU share in the steady state, and — after a tenth of the devices stop being pinged 10 s before
// the end — how late their expiries reach the VM control (end to end) and how late the device
// timers fired.
internal static class SoakRun
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(5);

    internal static int Run(string[] args)
    {
        int devices = args.Length > 0 && int.TryParse(args[0], out int d) ? d : 10_000;
        int seconds = args.Length > 1 && int.TryParse(args[1], out int s) ? Math.Max(s, 20) : 60;
        int stopAt = seconds - 10;
        string directory = HostingBench.JournalDirectory();
        ulong ramSize = (ulong)devices * 1024 + (1 << 20);
        using GuestMemory memory = GuestMemory.CreateAnonymous(ramSize);
        var allocator = new GuestAllocator(memory, 0, ramSize);

        // Guest side first (rings and heartbeat buffers live in guest RAM; their driver objects are the guest's, not the host's).
        var rings = new SplitRingDriver[devices];
        var buffers = new ulong[devices];
        for (int i = 0; i < devices; i++)
        {
            rings[i] = SplitRingDriver.Allocate(allocator, 4, eventIndex: false);
            buffers[i] = allocator.Allocate(8, 8);
        }

        var vm = new RecordingVmControl();
        var expiredAt = new ConcurrentDictionary<string, (long Call, DateTimeOffset DeviceTime)>();
        vm.OnCall = (context, timestamp) => expiredAt.TryAdd(context.DeviceId, (timestamp, context.Trigger?.HostTime ?? default));
        using PolicyService manager = HostingBench.Manager(directory, new DevicePolicy { OnWatchdog = WatchdogAction.Reset, StormThreshold = 0 });
        manager.Start();
        long managedBefore = ManagedBytes();
        long workingSetBefore = Environment.WorkingSet;

        // Host side: device, its virtqueue and transport context, its policy-service registration.
        var watchdogs = new WatchdogDevice[devices];
        var options = new WatchdogDeviceOptions { Features = WatchdogFeatures.None, DefaultTimeout = s_timeout, MinTimeout = TimeSpan.FromSeconds(1), EventCapacity = 4, ResumeGrace = TimeSpan.Zero };
        for (int i = 0; i < devices; i++)
        {
            options.DeviceId = "vm" + i.ToString(CultureInfo.InvariantCulture);
            var device = new WatchdogDevice(options);
            var queue = new Virtqueue(4);
            if (queue.Activate(memory, rings[i].Config, VirtqueueFeatures.None) != VirtqueueStatus.Ok || !device.AcceptFeatures(VirtioFeatures.Version1))
            {
                throw new InvalidOperationException("device bring-up failed");
            }

            device.Activate(new SoakContext(memory, queue));
            manager.Attach(device, vm);
            watchdogs[i] = device;
        }

        long managedPerDevice = (ManagedBytes() - managedBefore) / devices;
        long workingSetPerDevice = (Environment.WorkingSet - workingSetBefore) / devices;
        Console.WriteLine($"{devices} devices attached: managed heap {managedPerDevice} B/device, working set {workingSetPerDevice} B/device (journal in {directory})");

        var lastPing = new long[devices];
        var lastPingUtc = new DateTimeOffset[devices];
        long pings = 0;
        long notifyTicks = 0;        // time inside the device's Notify on the pinging thread (steady window)
        long notifyTicksAtStop = 0;
        bool timing = false;
        double steadyCpu = 0;
        double steadyPinger = 0;
        double steadyWall = 0;
        var clock = Stopwatch.StartNew();
        TimeSpan processCpuAtStart = default;
        double pingerCpuAtStart = 0;
        Dictionary<string, double> threadsAtStart = [];
        Dictionary<string, double> threadsAtStop = [];
        TimeSpan wallAtStart = default;
        TimeSpan pauseAtStop = default;
        int[] collectionsAtStop = new int[3];
        const int Batches = 100;
        for (int second = 0; second < seconds; second++)
        {
            if (second == 5)
            {
                processCpuAtStart = Process.GetCurrentProcess().TotalProcessorTime;
                pingerCpuAtStart = ThreadCpuSeconds();
                threadsAtStart = ThreadsCpuSeconds();
                wallAtStart = clock.Elapsed;
                timing = true;
            }
            else if (second == stopAt)
            {
                steadyCpu = (Process.GetCurrentProcess().TotalProcessorTime - processCpuAtStart).TotalSeconds;
                steadyPinger = ThreadCpuSeconds() - pingerCpuAtStart;
                threadsAtStop = ThreadsCpuSeconds();
                pauseAtStop = GC.GetTotalPauseDuration();
                collectionsAtStop = [GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2)];
                steadyWall = (clock.Elapsed - wallAtStart).TotalSeconds;
                notifyTicksAtStop = notifyTicks;
                timing = false;
            }

            for (int batch = 0; batch < Batches; batch++)
            {
                int from = batch * devices / Batches;
                int to = (batch + 1) * devices / Batches;
                for (int i = from; i < to; i++)
                {
                    if (second >= stopAt && i % 10 == 0)
                    {
                        continue;
                    }

                    SplitRingDriver ring = rings[i];
                    while (ring.TryGetUsed(out _) == UsedBufferStatus.Ok)
                    {
                    }

                    if (ring.TryAdd([new DriverBuffer(buffers[i], 8, DeviceWritable: true)], out _))
                    {
                        ring.Publish();

                        // The device's share of this thread: what a vCPU thread exiting on the
                        // doorbell would spend in the device (heartbeat processing, inline).
                        long before = timing ? Stopwatch.GetTimestamp() : 0;
                        watchdogs[i].Notify(0);
                        if (timing)
                        {
                            notifyTicks += Stopwatch.GetTimestamp() - before;
                        }

                        lastPing[i] = Stopwatch.GetTimestamp();
                        lastPingUtc[i] = DateTimeOffset.UtcNow;
                        pings++;
                    }
                }

                TimeSpan due = TimeSpan.FromSeconds(second) + TimeSpan.FromMilliseconds((batch + 1) * 1000.0 / Batches);
                TimeSpan wait = due - clock.Elapsed;
                if (wait > TimeSpan.Zero)
                {
                    Thread.Sleep(wait);
                }
            }
        }

        var endToEnd = new List<double>();
        var deviceTimer = new List<double>();
        var byCallTime = new List<(long Call, double Late)>();
        int missing = 0;
        for (int i = 0; i < devices; i += 10)
        {
            if (!expiredAt.TryGetValue(watchdogs[i].Id, out (long Call, DateTimeOffset DeviceTime) hit))
            {
                missing++;
                continue;
            }

            endToEnd.Add((Stopwatch.GetElapsedTime(lastPing[i], hit.Call) - s_timeout).TotalMilliseconds);
            byCallTime.Add((hit.Call, endToEnd[^1]));
            deviceTimer.Add((hit.DeviceTime - lastPingUtc[i] - s_timeout).TotalMilliseconds);
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"steady state ({steadyWall:0.0} s, {pings} pings in all): process CPU {100 * steadyCpu / steadyWall:0.00} % of one core; of which the pinging guest thread (ring writes and the device's inline heartbeat processing) {100 * steadyPinger / steadyWall:0.00} %, the rest (timers, policy service, GC) {100 * (steadyCpu - steadyPinger) / steadyWall:0.00} %"));
        double deviceOnPinger = Stopwatch.GetElapsedTime(0, notifyTicksAtStop).TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  the pinging thread split by timing Notify: the device's heartbeat processing {100 * deviceOnPinger / steadyWall:0.00} %, the simulated guest (ring writes, reaping, bookkeeping) {100 * (steadyPinger - deviceOnPinger) / steadyWall:0.00} %; host side in all (device + timers + policy service + GC) {100 * (steadyCpu - steadyPinger + deviceOnPinger) / steadyWall:0.00} % of one core"));
        // Where "the rest" goes, by thread name (threads of one name summed; the pinging thread is "main").
        var byName = new Dictionary<string, double>();
        foreach ((string key, double seconds2) in threadsAtStop)
        {
            string name = key[(key.IndexOf(':', StringComparison.Ordinal) + 1)..];
            byName[name] = byName.GetValueOrDefault(name) + seconds2 - threadsAtStart.GetValueOrDefault(key);
        }

        Console.WriteLine("  by thread: " + string.Join(", ", byName.Where(p => p.Value > 0).OrderByDescending(p => p.Value).Take(6)
            .Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Key} {100 * p.Value / steadyWall:0.00} %"))));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  GC while the expiries fire (last 10 s): gen0/1/2 collections {GC.CollectionCount(0) - collectionsAtStop[0]}/{GC.CollectionCount(1) - collectionsAtStop[1]}/{GC.CollectionCount(2) - collectionsAtStop[2]}, paused {(GC.GetTotalPauseDuration() - pauseAtStop).TotalMilliseconds:0.0} ms in all"));
        Console.WriteLine($"expiries: {endToEnd.Count} of {(devices + 9) / 10} reached the VM control ({missing} missing); unexpected VM-control calls: {vm.Calls - endToEnd.Count}");
        Console.WriteLine("  lateness, last ping + timeout -> IVmControl call (end to end): " + Percentiles.Describe([.. endToEnd], "ms"));
        Console.WriteLine("  lateness, last ping + timeout -> device timer fired (event HostTime): " + Percentiles.Describe([.. deviceTimer], "ms"));
        byCallTime.Sort();
        Console.WriteLine("  end to end, the first 10 expiries handled (ms): " + string.Join(" ", byCallTime.Take(10).Select(e => e.Late.ToString("0.0", CultureInfo.InvariantCulture))));
        Console.WriteLine("  end to end without the first 20 (the policy path's first run in this process): " + Percentiles.Describe([.. byCallTime.Skip(20).Select(e => e.Late)], "ms"));
        manager.StopAsync().GetAwaiter().GetResult();
        foreach (WatchdogDevice device in watchdogs)
        {
            device.Dispose();
        }

        HostingBench.Delete(directory);
        return missing == 0 ? 0 : 1;
    }

    internal static long ManagedBytes()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    // Every thread's user + system CPU time by "tid:name", from /proc/self/task (Linux; empty elsewhere).
    internal static Dictionary<string, double> ThreadsCpuSeconds()
    {
        var result = new Dictionary<string, double>();
        try
        {
            foreach (string task in Directory.GetDirectories("/proc/self/task"))
            {
                try
                {
                    string stat = File.ReadAllText(Path.Combine(task, "stat"));
                    int open = stat.IndexOf('(', StringComparison.Ordinal);
                    int close = stat.LastIndexOf(')');
                    string name = stat[(open + 1)..close];
                    string[] fields = stat[(close + 2)..].Split(' ');
                    long ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
                    result[Path.GetFileName(task) + ":" + name] = ticks / 100.0;
                }
                catch (IOException)
                {
                    // The thread ended meanwhile.
                }
            }
        }
        catch (IOException)
        {
        }

        return result;
    }

    // This thread's user + system CPU time, from /proc/thread-self/stat (Linux; 0 elsewhere).
    private static double ThreadCpuSeconds()
    {
        try
        {
            string stat = File.ReadAllText("/proc/thread-self/stat");
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            long ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
            return ticks / 100.0;
        }
        catch (IOException)
        {
            return 0;
        }
    }
}
