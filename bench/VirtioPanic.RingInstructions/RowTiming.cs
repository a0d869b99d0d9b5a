using System.Diagnostics;

// `--time [ROW_SUBSTRING...]`: nanoseconds per chain of the rows, for a loaded machine where
// BenchmarkDotNet's means move with the neighbours. Every row runs one round at a time, the rows
// interleaved, for 40 passes of 200 rounds each after a warm-up (under `dotnet run` the JIT then
// has the Tier-1 code; in the NativeAOT build it is the code callgrind counts); the minimum and
// the 10th percentile of the per-round times are printed: the fastest rounds are the ones no
// neighbour interrupted. Not a replacement for the BenchmarkDotNet run on a quiet machine.
internal static class RowTiming
{
    internal static int Run((string Name, int ChainsPerRound, Func<long> Round)[] rows, string[] patterns)
    {
        var chosen = rows.Where(r => patterns.Length == 0 || patterns.Any(p => p.StartsWith('=') ? r.Name == p[1..] : r.Name.Contains(p, StringComparison.Ordinal))).ToArray();
        const int Passes = 40;
        const int RoundsPerPass = 200;
        var samples = chosen.Select(_ => new List<double>(Passes * RoundsPerPass)).ToArray();
        long sink = 0;
        // Warm up for two seconds of rounds, not a count: the JIT's call counting starts after
        // 100 ms without new Tier-0 code and its background compiler shares the machine with the
        // neighbours, so a short row measured after a fixed count can still be running Tier-0 or
        // OSR code.
        long warmEnd = Stopwatch.GetTimestamp() + (2 * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < warmEnd)
        {
            foreach (var row in chosen)
            {
                sink += row.Round();
            }
        }

        for (int pass = 0; pass < Passes; pass++)
        {
            for (int r = 0; r < chosen.Length; r++)
            {
                for (int i = 0; i < RoundsPerPass; i++)
                {
                    long start = Stopwatch.GetTimestamp();
                    sink += chosen[r].Round();
                    long end = Stopwatch.GetTimestamp();
                    samples[r].Add((end - start) * 1e9 / Stopwatch.Frequency / chosen[r].ChainsPerRound);
                }
            }
        }

        Console.WriteLine($"{"row",-50} {"min ns",8} {"p10 ns",8}   (sum {sink})");
        for (int r = 0; r < chosen.Length; r++)
        {
            samples[r].Sort();
            Console.WriteLine($"{chosen[r].Name,-50} {samples[r][0],8:F2} {samples[r][samples[r].Count / 10],8:F2}");
        }

        return 0;
    }
}
