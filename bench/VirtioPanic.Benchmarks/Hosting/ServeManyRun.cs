using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Hosting;
using VirtioPanic.VhostUser;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.VhostUser.Tests.Protocol;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Benchmarks.Hosting;

// `--serve-many [devices] [seconds]` (defaults 100, 60): what `serve` does for many VMs in one
// process (Serve:Vms), measured per device. This process is the host: one policy service and
// journal, and per VM a watchdog device behind its own vhost-user back end on its own Unix
// socket, all served by the back ends' one event loop thread (epoll). The guests are a second process (this program
// with --serve-many-guests), so none of their work is counted here: per socket a scripted front
// end (the VhostUser tests' FakeFrontEnd) negotiates like QEMU (features, a memfd memory table,
// ring 0 with kick and call eventfds, enable) and then pings the device's watchdogq once per
// second (one posted buffer and a kick), spread evenly over each second. Reports this process's
// CPU share of a core in the steady state and its memory per device (managed heap, working set
// and its private part from /proc/self/smaps_rollup: the shared part is mostly the guests' memfd
// pages the back ends map, which are the guests' memory, not the devices'; threads), each
// measured after all the sessions were up.
internal static class ServeManyRun
{
    internal static int Run(string[] args)
    {
        int devices = args.Length > 0 && int.TryParse(args[0], out int d) ? Math.Max(d, 1) : 100;
        int seconds = args.Length > 1 && int.TryParse(args[1], out int s) ? Math.Max(s, 20) : 60;
        string directory = HostingBench.JournalDirectory();
        string sockets = Path.Combine(directory, "sockets");
        Directory.CreateDirectory(sockets);

        var vm = new RecordingVmControl();
        using PolicyService manager = HostingBench.Manager(directory, new DevicePolicy { OnWatchdog = WatchdogAction.Reset, StormThreshold = 0 });
        manager.Start();
        long managedBefore = SoakRun.ManagedBytes();
        long workingSetBefore = Environment.WorkingSet;
        (long privateBefore, long sharedBefore) = PrivateAndShared();
        int threadsBefore = Process.GetCurrentProcess().Threads.Count;

        using var stop = new CancellationTokenSource();
        var watchdogs = new WatchdogDevice[devices];
        var backends = new VhostUserBackend[devices];
        var serving = new Task[devices];
        // The device with serve's default options (every feature offered, the default event capacity) and its policy registration.
        for (int i = 0; i < devices; i++)
        {
            string id = "vm" + i.ToString(CultureInfo.InvariantCulture);
            watchdogs[i] = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = id, DefaultTimeout = TimeSpan.FromSeconds(5), MinTimeout = TimeSpan.FromSeconds(1) });
            manager.Attach(watchdogs[i], vm);
        }

        long managedDevices = (SoakRun.ManagedBytes() - managedBefore) / devices;

        // Its vhost-user back end, listening on its own socket.
        for (int i = 0; i < devices; i++)
        {
            backends[i] = new VhostUserBackend(watchdogs[i], Path.Combine(sockets, watchdogs[i].Id + ".sock"));
            // Bound and listening when RunAsync returns its task (the loop watches it from its next turn).
            serving[i] = backends[i].RunAsync(stop.Token);
        }

        long managedListening = (SoakRun.ManagedBytes() - managedBefore) / devices;
        long workingSetListening = (Environment.WorkingSet - workingSetBefore) / devices;
        using Process guests = StartGuests(sockets, devices, seconds);
        string? ready = guests.StandardOutput.ReadLine();
        if (ready != "ready")
        {
            Console.Error.WriteLine("the guests did not start: " + ready + guests.StandardError.ReadToEnd());
            return 1;
        }

        int sessions = watchdogs.Count(w => w.GetStatus().Armed);
        long managedPerDevice = (SoakRun.ManagedBytes() - managedBefore) / devices;
        long workingSetPerDevice = (Environment.WorkingSet - workingSetBefore) / devices;
        int threads = Process.GetCurrentProcess().Threads.Count - threadsBefore;
        (long privateNow, long sharedNow) = PrivateAndShared();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{devices} devices on {devices} vhost-user sockets, {sessions} armed by their front end's first ping: managed heap {managedPerDevice} B/device (device + policy registration {managedDevices} B, + listening back end {managedListening - managedDevices} B, + connected session {managedPerDevice - managedListening} B), working set {workingSetPerDevice} B/device ({workingSetListening} B before the front ends connected), {threads} more threads ({(double)threads / devices:0.00} per device)"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  working set by kind (smaps_rollup): private {(privateNow - privateBefore) / devices} B/device, shared {(sharedNow - sharedBefore) / devices} B/device (mostly the guests' mapped memfd pages: rings and buffers)"));

        // Steady state: from 5 s after the guests are up to 5 s before they stop.
        Thread.Sleep(TimeSpan.FromSeconds(5));
        TimeSpan cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
        Dictionary<string, double> threadsStart = ThreadsCpuSeconds();
        var wall = Stopwatch.StartNew();
        Thread.Sleep(TimeSpan.FromSeconds(seconds - 10));
        double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds;
        Dictionary<string, double> threadsEnd = ThreadsCpuSeconds();
        double elapsed = wall.Elapsed.TotalSeconds;
        int armed = watchdogs.Count(w => w.GetStatus() is { Armed: true, Expired: false });
        double share = 100 * cpu / elapsed;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"steady state ({elapsed:0.0} s, {armed} of {devices} devices armed and never expired: each pinged once a second, 5 s timeout): this process {share:0.00} % of one core = {share / devices:0.0000} % per device; scaled linearly to 10 000 devices {share / devices * 10_000:0.0} %"));
        var byName = new Dictionary<string, double>();
        foreach ((string key, double end) in threadsEnd)
        {
            // Threads of one kind summed (digits dropped: numbered pool threads).
            string name = string.Concat(key[(key.IndexOf(':', StringComparison.Ordinal) + 1)..].Where(c => !char.IsAsciiDigit(c)));
            byName[name] = byName.GetValueOrDefault(name) + end - threadsStart.GetValueOrDefault(key);
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  threads alive at both samples: {100 * byName.Values.Sum() / elapsed:0.00} % together (the rest of the process's share: threads that started or ended in between, e.g. pool threads)"));
        Console.WriteLine("  by thread: " + string.Join(", ", byName.Where(p => p.Value > 0).OrderByDescending(p => p.Value).Take(8)
            .Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Key} {100 * p.Value / elapsed:0.00} %"))));
        Console.WriteLine($"expiries: {vm.Calls} VM-control calls while every device was pinged (0 expected); load average {File.ReadAllText("/proc/loadavg").Trim()}");

        bool exited = guests.WaitForExit(TimeSpan.FromSeconds(30));
        if (!exited)
        {
            guests.Kill();
        }

        stop.Cancel();
        Task.WhenAll(serving).ContinueWith(_ => { }, TaskScheduler.Default).Wait(TimeSpan.FromSeconds(30));
        manager.StopAsync().GetAwaiter().GetResult();
        foreach (VhostUserBackend backend in backends)
        {
            backend.Dispose();
        }

        foreach (WatchdogDevice device in watchdogs)
        {
            device.Dispose();
        }

        HostingBench.Delete(directory);
        return sessions == devices && armed == devices && vm.Calls == 0 && exited ? 0 : 1;
    }

    // `--serve-many-guests <socket directory> <devices> <seconds>`: the front ends, in their own process.
    internal static int RunGuests(string[] args)
    {
        string sockets = args[0];
        int devices = int.Parse(args[1], CultureInfo.InvariantCulture);
        int seconds = int.Parse(args[2], CultureInfo.InvariantCulture);
        var frontEnds = new FakeFrontEnd[devices];
        var rings = new SplitRingDriver[devices];
        var kicks = new int[devices];
        var buffers = new ulong[devices];
        for (int i = 0; i < devices; i++)
        {
            string path = Path.Combine(sockets, "vm" + i.ToString(CultureInfo.InvariantCulture) + ".sock");
            for (int attempt = 0; !File.Exists(path) && attempt < 500; attempt++)
            {
                Thread.Sleep(10);
            }

            FakeFrontEnd frontEnd = new(path);
            frontEnd.Send(VhostUserRequest.SetOwner, []);
            frontEnd.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1 | VhostUserBackend.ProtocolFeaturesBit);
            frontEnd.SendQemuStyleMemTable();
            rings[i] = frontEnd.AttachRing(0, 4, eventIndex: false, out kicks[i], out _);
            frontEnd.SendState(VhostUserRequest.SetVringEnable, 0, 1);
            _ = frontEnd.GetFeatures();   // a round trip: the back end handled everything above
            buffers[i] = frontEnd.Allocator.Allocate(8);
            frontEnds[i] = frontEnd;
        }

        Ping(rings, kicks, buffers, 0, devices);
        Console.Out.WriteLine("ready");
        Console.Out.Flush();

        // Pings spread evenly over each second, in 100 batches.
        const int Batches = 100;
        var clock = Stopwatch.StartNew();
        for (int second = 1; second < seconds; second++)
        {
            for (int batch = 0; batch < Batches; batch++)
            {
                TimeSpan due = TimeSpan.FromSeconds(second) + TimeSpan.FromMilliseconds(batch * 1000.0 / Batches);
                TimeSpan wait = due - clock.Elapsed;
                if (wait > TimeSpan.Zero)
                {
                    Thread.Sleep(wait);
                }

                Ping(rings, kicks, buffers, batch * devices / Batches, (batch + 1) * devices / Batches);
            }
        }

        foreach (FakeFrontEnd frontEnd in frontEnds)
        {
            frontEnd.Dispose();
        }

        return 0;
    }

    private static void Ping(SplitRingDriver[] rings, int[] kicks, ulong[] buffers, int from, int to)
    {
        for (int i = from; i < to; i++)
        {
            while (rings[i].TryGetUsed(out _) == UsedBufferStatus.Ok)
            {
            }

            if (rings[i].TryAdd([new DriverBuffer(buffers[i], 8, DeviceWritable: true)], out _))
            {
                rings[i].Publish();
                FakeFrontEnd.Signal(kicks[i]);
            }
        }
    }

    // Private_Clean + Private_Dirty and Shared_Clean + Shared_Dirty of this process, in bytes.
    private static (long Private, long Shared) PrivateAndShared()
    {
        long priv = 0;
        long shared = 0;
        foreach (string line in File.ReadLines("/proc/self/smaps_rollup"))
        {
            string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 2 || !long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long kib))
            {
                continue;
            }

            if (parts[0] is "Private_Clean:" or "Private_Dirty:")
            {
                priv += kib * 1024;
            }
            else if (parts[0] is "Shared_Clean:" or "Shared_Dirty:")
            {
                shared += kib * 1024;
            }
        }

        return (priv, shared);
    }

    // Every thread's time on a CPU by "tid:name", in seconds, from /proc/self/task/*/schedstat (ns,
    // exact; stat's utime/stime are whole ticks, and a hundred session threads of a few ms each read 0).
    private static Dictionary<string, double> ThreadsCpuSeconds()
    {
        var result = new Dictionary<string, double>();
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            try
            {
                string name = File.ReadAllText(Path.Combine(task, "comm")).Trim();
                string schedstat = File.ReadAllText(Path.Combine(task, "schedstat"));
                result[Path.GetFileName(task) + ":" + name] = long.Parse(schedstat.AsSpan(0, schedstat.IndexOf(' ', StringComparison.Ordinal)), CultureInfo.InvariantCulture) / 1e9;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The thread ended meanwhile.
            }
        }

        return result;
    }

    private static Process StartGuests(string sockets, int devices, int seconds)
    {
        string self = Environment.ProcessPath ?? "dotnet";
        var start = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            start.ArgumentList.Add(Assembly.GetExecutingAssembly().Location);
        }

        foreach (string arg in new[] { "--serve-many-guests", sockets, devices.ToString(CultureInfo.InvariantCulture), seconds.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(arg);
        }

        return Process.Start(start)!;
    }
}
