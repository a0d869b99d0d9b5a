namespace VirtioPanic.OpenTelemetry.Tests;

// src/README.md §1: the OpenTelemetry wiring is the only library that references OpenTelemetry; it
// sees the other libraries through their public API and exports two types.
public sealed class ArchitectureTests
{
    [Test]
    public void Assembly_ReferencesOnlyVirtioPanicOpenTelemetryExtensionsAndTheBcl()
    {
        string[] references = [.. typeof(VirtioPanicTelemetry).Assembly.GetReferencedAssemblies().Select(a => a.Name!)];

        Assert.Multiple(() =>
        {
            Assert.That(references.Where(n => !IsAllowed(n)), Is.Empty);
            Assert.That(references, Does.Contain("VirtioPanic.Hosting"));
            Assert.That(references.Where(n => n.StartsWith("OpenTelemetry", StringComparison.Ordinal)), Is.Not.Empty);
        });
    }

    [Test]
    public void PublicSurface_IsTheNamesAndTheExtensions()
    {
        string[] exported = [.. typeof(VirtioPanicTelemetry).Assembly.GetExportedTypes().Select(t => t.Name).Order()];

        Assert.That(exported, Is.EqualTo(new[] { "VirtioPanicOpenTelemetryExtensions", "VirtioPanicTelemetry" }));
    }

    private static bool IsAllowed(string name) =>
        name is "VirtioPanic.Virtio" or "VirtioPanic.Device" or "VirtioPanic.Transport" or "VirtioPanic.VhostUser" or "VirtioPanic.Hosting"
            or "System" or "netstandard" or "mscorlib"
        || name.StartsWith("System.", StringComparison.Ordinal)
        || name.StartsWith("OpenTelemetry", StringComparison.Ordinal)
        || name.StartsWith("Microsoft.Extensions.", StringComparison.Ordinal);
}
