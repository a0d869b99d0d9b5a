using BenchmarkDotNet.Running;
using VirtioPanic.Benchmarks;

// Full run (manual):  dotnet run -c Release --project bench/VirtioPanic.Benchmarks -- --filter '*'
// Quick run (CI):     dotnet run -c Release --project bench/VirtioPanic.Benchmarks -- --quick
// The quick run proves every benchmark still runs and checks allocation-budget.json.
// Hosting console modes (manual, see bench/README.md):
//   --panic-latency [count]      guest panic write -> VM-control call, p50/p99
//   --soak [devices] [seconds]   10 000 devices pinged once per second: CPU, memory per device, expiry lateness
//   --storm [devices] [tmpfs|disk]  10 000 devices panic at once: write -> VM-control call percentiles, nothing dropped
//   --serve-many [devices] [seconds]  serve's many-VM mode: devices on real vhost-user sockets, front ends in a child process pinging once per second: CPU and memory per device
if (args.Length > 0 && args[0] == "--panic-latency")
{
    return VirtioPanic.Benchmarks.Hosting.PanicLatencyRun.Run(args[1..]);
}

if (args.Length > 0 && args[0] == "--soak")
{
    return VirtioPanic.Benchmarks.Hosting.SoakRun.Run(args[1..]);
}

if (args.Length > 0 && args[0] == "--serve-many")
{
    return VirtioPanic.Benchmarks.Hosting.ServeManyRun.Run(args[1..]);
}

if (args.Length > 0 && args[0] == "--serve-many-guests")
{
    return VirtioPanic.Benchmarks.Hosting.ServeManyRun.RunGuests(args[1..]);
}

if (args.Length > 0 && args[0] == "--storm")
{
    return VirtioPanic.Benchmarks.Hosting.StormRun.Run(args[1..]);
}

return args.Contains("--quick")
    ? QuickRun.Run(args.Where(a => a != "--quick").ToArray())
    : RunFull(args);

static int RunFull(string[] args)
{
    BenchmarkSwitcher.FromAssembly(typeof(QuickRun).Assembly).Run(args);
    return 0;
}
