using System.Reflection;

namespace VirtioPanic.Host.Tests;

// The released surface is what protects the API from an accidental break (src/README.md §8): the
// analyzer fails the build (RS0017) when a member listed in PublicAPI.Shipped.txt changes or goes.
// That only works while every packable library has its baseline, so this test fails when a
// library's Shipped file is empty or misses a public type the assembly exports.
public sealed class PublicApiBaselineTests
{
    private static readonly (string Project, Assembly Assembly)[] s_libraries =
    [
        ("VirtioPanic.Device", typeof(VirtioPanic.Device.WatchdogDevice).Assembly),
        ("VirtioPanic.GuestDriver", typeof(VirtioPanic.GuestDriver.Watchdog.WatchdogDriver).Assembly),
        ("VirtioPanic.Hosting", typeof(VirtioPanic.Hosting.PolicyService).Assembly),
        ("VirtioPanic.OpenTelemetry", typeof(VirtioPanic.OpenTelemetry.VirtioPanicTelemetry).Assembly),
        ("VirtioPanic.Transport", typeof(VirtioPanic.Transport.Pci.VirtioPciFunction).Assembly),
        ("VirtioPanic.VhostUser", typeof(VirtioPanic.VhostUser.VhostUserBackend).Assembly),
        ("VirtioPanic.Virtio", typeof(VirtioPanic.Virtio.Queue.Virtqueue).Assembly),
    ];

    [Test]
    public void EveryPackableLibrary_ShipsABaseline_ListingEachExportedType()
    {
        string root = RepositoryRoot.Find();
        var problems = new List<string>();
        foreach ((string project, Assembly assembly) in s_libraries)
        {
            string[] shipped = [.. File.ReadAllLines(Path.Combine(root, "src", project, "PublicAPI.Shipped.txt")).Where(l => l.Length > 0 && !l.StartsWith('#'))];
            if (shipped.Length == 0)
            {
                problems.Add($"{project}: PublicAPI.Shipped.txt is empty");
                continue;
            }

            var declared = new HashSet<string>(shipped.Select(l => l.TrimStart('~')), StringComparer.Ordinal);
            foreach (Type type in assembly.GetExportedTypes())
            {
                // The analyzer's line for a type is its full name (nested types with '.').
                string name = type.FullName!.Replace('+', '.');
                int tick = name.IndexOf('`', StringComparison.Ordinal);
                if (tick < 0 && !declared.Contains(name))
                {
                    problems.Add($"{project}: exported type {name} is not in the shipped baseline");
                }
            }
        }

        Assert.That(problems, Is.Empty);
    }
}
