using System.Diagnostics;
using VirtioPanic.Device;
using VirtioPanic.Hosting;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Virtio.Memory;
using Mmio = VirtioPanic.Transport.Mmio.VirtioMmioRegisters;

namespace VirtioPanic.Benchmarks.Hosting;

// `--panic-latency [count]`: guest panic write → VM-control call, p50/p99, one panic at a time
// (each fully handled before the next), for both journal durability modes, with the journal on
// tmpfs (/dev/shm) and, for comparison, on the temp directory's file system; each handled by the
// service's pump (one thread-pool hop) and inline on the writing thread (InlinePanicHandling).
internal static class PanicLatencyRun
{
    // 0: back to back (the consumer's thread is still warm); 1: 1 ms of idleness before each panic
    // (the thread-pool workers have gone to sleep, as on a host where panics are rare).
    private static int s_gapMs;

    private static void Gap()
    {
        if (s_gapMs > 0)
        {
            Thread.Sleep(s_gapMs);
        }
    }

    internal static int Run(string[] args)
    {
        int count = args.Length > 0 && int.TryParse(args[0], out int n) ? n : 10_000;
        Console.WriteLine($"guest panic write (virtio-mmio panic_events) -> IVmControl call; {count} panics per row (idle rows: a third) after up to 2000 warm-up");
        foreach (int gap in new[] { 0, 1 })
        {
            s_gapMs = gap;
            int rows = gap == 0 ? count : Math.Max(1, count / 3);
            string mode = gap == 0 ? "back to back" : "1 ms idle before each";
            Console.WriteLine($"-- {mode}");
            Console.WriteLine($"{"floor",-18} {"one thread-pool hop",-32} {Percentiles.Describe(HopFloor(rows), "us")}");
            Console.WriteLine($"{"device only",-18} {"panic write -> event read",-32} {Percentiles.Describe(DeviceHop(rows), "us")}");
            foreach (bool inline in new[] { false, true })
            {
                foreach (JournalDurability durability in Enum.GetValues<JournalDurability>())
                {
                    double[] micros = Measure(rows, durability, tmpfs: true, inline, out string where);
                    Console.WriteLine($"{durability,-18} {(inline ? "inline, " : "pump, ") + where,-32} {Percentiles.Describe(micros, "us")}");
                }
            }
        }

        s_gapMs = 0;
        Console.WriteLine("-- back to back, journal on disk");
        foreach (bool inline in new[] { false, true })
        {
            foreach (JournalDurability durability in Enum.GetValues<JournalDurability>())
            {
                double[] micros = Measure(Math.Max(1, count / 3), durability, tmpfs: false, inline, out string where);
                Console.WriteLine($"{durability,-18} {(inline ? "inline, " : "pump, ") + where,-32} {Percentiles.Describe(micros, "us")}");
            }
        }

        return 0;
    }

    // The floor under any asynchronous consumer: one unbounded-channel write whose reader awaits on
    // the thread pool (the device's event channel hands events to the policy service this way).
    private static double[] HopFloor(int count)
    {
        var channel = System.Threading.Channels.Channel.CreateUnbounded<long>(new System.Threading.Channels.UnboundedChannelOptions { SingleReader = true, AllowSynchronousContinuations = false });
        long received = 0;
        long seen = 0;
        Task reader = Task.Run(async () =>
        {
            while (await channel.Reader.WaitToReadAsync().ConfigureAwait(false))
            {
                while (channel.Reader.TryRead(out long _))
                {
                    Volatile.Write(ref received, Stopwatch.GetTimestamp());
                    Interlocked.Increment(ref seen);
                }
            }
        });
        var micros = new double[count];
        for (int i = -Math.Min(2000, count); i < count; i++)
        {
            Gap();
            long before = Volatile.Read(ref seen);
            long start = Stopwatch.GetTimestamp();
            channel.Writer.TryWrite(start);
            var spin = default(SpinWait);
            while (Volatile.Read(ref seen) == before)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            if (i >= 0)
            {
                micros[i] = Stopwatch.GetElapsedTime(start, Volatile.Read(ref received)).TotalMicroseconds;
            }
        }

        channel.Writer.Complete();
        reader.GetAwaiter().GetResult();
        return micros;
    }

    // The device alone: the guest's panic_events write until an awaiting reader has the event.
    private static double[] DeviceHop(int count)
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(1 << 20);
        using var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "hop", EventCapacity = 1024 });
        var mmio = new VirtioMmioTransport(device, memory, new Transport.NullInterruptSink());
        long received = 0;
        long seen = 0;
        Task reader = Task.Run(async () =>
        {
            while (await device.Events.WaitToReadAsync().ConfigureAwait(false))
            {
                while (device.Events.TryRead(out WatchdogEvent? _))
                {
                    Volatile.Write(ref received, Stopwatch.GetTimestamp());
                    Interlocked.Increment(ref seen);
                }
            }
        });
        byte[] panic = [1, 0, 0, 0];
        var micros = new double[count];
        for (int i = -Math.Min(2000, count); i < count; i++)
        {
            Gap();
            long before = Volatile.Read(ref seen);
            long start = Stopwatch.GetTimestamp();
            mmio.Write(Mmio.Config + 8, panic);
            var spin = default(SpinWait);
            while (Volatile.Read(ref seen) == before)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            if (i >= 0)
            {
                micros[i] = Stopwatch.GetElapsedTime(start, Volatile.Read(ref received)).TotalMicroseconds;
            }
        }

        device.Dispose();
        reader.GetAwaiter().GetResult();
        return micros;
    }

    private static double[] Measure(int count, JournalDurability durability, bool tmpfs, bool inline, out string where)
    {
        string directory = tmpfs ? HostingBench.JournalDirectory() : Path.Combine(Path.GetTempPath(), "virtiopanic-bench-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        where = tmpfs && directory.StartsWith("/dev/shm", StringComparison.Ordinal) ? "tmpfs" : "disk (" + Path.GetTempPath().TrimEnd('/') + ")";
        using GuestMemory memory = GuestMemory.CreateAnonymous(1 << 20);
        using var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "latency", EventCapacity = 1024 });
        var mmio = new VirtioMmioTransport(device, memory, new Transport.NullInterruptSink());
        var vm = new RecordingVmControl();
        using PolicyService manager = HostingBench.Manager(directory, new DevicePolicy { OnPanic = PanicAction.Destroy, StormThreshold = 0 }, durability, inline);
        long handled = 0;
        manager.EventHandled += (_, _) => Interlocked.Increment(ref handled);
        manager.Attach(device, vm);
        manager.Start();
        byte[] panic = [1, 0, 0, 0];
        var micros = new double[count];
        int warmup = Math.Min(2000, count);
        for (int i = -warmup; i < count; i++)
        {
            Gap();
            long before = Volatile.Read(ref handled);
            long calls = vm.Calls;
            long start = Stopwatch.GetTimestamp();
            mmio.Write(Mmio.Config + 8, panic);
            var spin = default(SpinWait);
            while (vm.Calls == calls)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            double us = Stopwatch.GetElapsedTime(start, vm.LastCall).TotalMicroseconds;
            while (Volatile.Read(ref handled) == before)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            if (i >= 0)
            {
                micros[i] = us;
            }
        }

        manager.StopAsync().GetAwaiter().GetResult();
        HostingBench.Delete(directory);
        return micros;
    }
}
