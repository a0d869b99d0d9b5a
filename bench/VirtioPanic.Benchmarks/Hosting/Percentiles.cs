using System.Globalization;

namespace VirtioPanic.Benchmarks.Hosting;

internal static class Percentiles
{
    internal static double Of(double[] sorted, double percentile)
    {
        if (sorted.Length == 0)
        {
            return double.NaN;
        }

        int index = (int)Math.Ceiling(percentile / 100 * sorted.Length) - 1;
        return sorted[Math.Clamp(index, 0, sorted.Length - 1)];
    }

    internal static string Describe(double[] values, string unit)
    {
        double[] sorted = [.. values.Order()];
        return string.Create(CultureInfo.InvariantCulture, $"n={sorted.Length} p50={Of(sorted, 50):0.0} {unit} p90={Of(sorted, 90):0.0} {unit} p99={Of(sorted, 99):0.0} {unit} max={(sorted.Length == 0 ? double.NaN : sorted[^1]):0.0} {unit}");
    }
}
