using BenchmarkDotNet.Running;
using VirtioPanic.Benchmarks;

// Full run (manual):  dotnet run -c Release --project bench/VirtioPanic.Benchmarks -- --filter '*'
// Quick run (CI):     dotnet run -c Release --project bench/VirtioPanic.Benchmarks -- --quick
// The quick run proves every benchmark still runs and checks allocation-budget.json.
return args.Contains("--quick")
    ? QuickRun.Run(args.Where(a => a != "--quick").ToArray())
    : RunFull(args);

static int RunFull(string[] args)
{
    BenchmarkSwitcher.FromAssembly(typeof(QuickRun).Assembly).Run(args);
    return 0;
}
