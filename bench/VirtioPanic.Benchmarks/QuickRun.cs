using System.Text.Json;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace VirtioPanic.Benchmarks;

// CI mode: every benchmark runs in-process for a few iterations (numbers are not meaningful),
// then the allocated bytes per operation are checked against allocation-budget.json. Exit code 1
// on any failure or budget violation.
internal static class QuickRun
{
    private const long SmallestObjectBytes = 24;

    internal static int Run(string[] args)
    {
        Job job = Job.Dry
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithWarmupCount(4)
            .WithIterationCount(2)
            .WithInvocationCount(1024)
            .WithUnrollFactor(1)
            .WithId("Quick");
        IConfig config = ManualConfig.CreateEmpty()
            .AddJob(job)
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumnProvider(DefaultConfig.Instance.GetColumnProviders().ToArray())
            .AddLogger(DefaultConfig.Instance.GetLoggers().ToArray())
            .WithOption(ConfigOptions.DisableLogFile, true);

        IEnumerable<Summary> summaries = BenchmarkSwitcher.FromAssembly(typeof(QuickRun).Assembly).RunAll(config, args);
        Budget budget = Budget.Load(Path.Combine(AppContext.BaseDirectory, "allocation-budget.json"));
        int failures = 0;
        foreach (Summary summary in summaries)
        {
            foreach (BenchmarkReport report in summary.Reports)
            {
                string name = $"{report.BenchmarkCase.Descriptor.Type.Name}.{report.BenchmarkCase.Descriptor.WorkloadMethod.Name}";
                if (!report.Success)
                {
                    Console.WriteLine($"FAIL {name}: did not run");
                    failures++;
                    continue;
                }

                long allocated = report.GcStats.GetBytesAllocatedPerOperation(report.BenchmarkCase) ?? 0;
                long allowed = budget.For(name);

                // The smallest heap object is 24 bytes on a 64-bit runtime, so a per-operation
                // allocation shows up as at least that much. Less than that is a one-time
                // allocation (tiering, first-call setup) spread over the few thousand operations
                // of a quick run: reported, not counted against the budget.
                bool within = allocated <= allowed || allocated < SmallestObjectBytes;
                string note = allocated > allowed && within ? " (below one object per operation: one-time, amortized)" : string.Empty;
                Console.WriteLine($"{(within ? "ok  " : "FAIL")} {name}: {allocated} B/op allocated (budget {allowed} B/op){note}");
                failures += within ? 0 : 1;
            }
        }

        Console.WriteLine(failures == 0 ? "benchmarks: all ran within the allocation budget" : $"benchmarks: {failures} failure(s)");
        return failures == 0 ? 0 : 1;
    }

    private sealed class Budget
    {
        private readonly long _default;
        private readonly Dictionary<string, long> _overrides;

        private Budget(long defaultBytes, Dictionary<string, long> overrides)
        {
            _default = defaultBytes;
            _overrides = overrides;
        }

        internal static Budget Load(string path)
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllText(path));
            JsonElement root = document.RootElement;
            long defaultBytes = root.GetProperty("defaultBytesPerOperation").GetInt64();
            var overrides = new Dictionary<string, long>(StringComparer.Ordinal);
            if (root.TryGetProperty("benchmarks", out JsonElement benchmarks))
            {
                foreach (JsonProperty property in benchmarks.EnumerateObject())
                {
                    overrides[property.Name] = property.Value.GetInt64();
                }
            }

            return new Budget(defaultBytes, overrides);
        }

        internal long For(string name) => _overrides.TryGetValue(name, out long bytes) ? bytes : _default;
    }
}
