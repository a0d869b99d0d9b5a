namespace VirtioPanic.Fuzz;

internal static partial class SeedGenerator
{
    internal static void WriteAll(string directory)
    {
        _ = directory;
    }
}
