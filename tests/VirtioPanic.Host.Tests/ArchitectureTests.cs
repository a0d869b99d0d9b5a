using System.Reflection;

namespace VirtioPanic.Host.Tests;

// Guards style.md §6 for VirtioPanic.Host: any src project, Microsoft.Extensions.*, Serilog.*, OpenTelemetry.* (the OTLP export),
// System.CommandLine and the BCL; never tests or bench; no public types.
public sealed class ArchitectureTests
{
    private static Assembly Subject => Assembly.LoadFrom(Path.Combine(AppContext.BaseDirectory, "VirtioPanic.Host.dll"));

    [Test]
    public void Assembly_ReferencesOnlyWhatStyleSection6Allows()
    {
        string[] references = [.. Subject.GetReferencedAssemblies().Select(a => a.Name!)];

        Assert.Multiple(() =>
        {
            Assert.That(references.Where(n => !IsAllowed(n)), Is.Empty);
            Assert.That(references, Has.None.Contains(".Tests").And.None.Contains("Benchmarks"));
            Assert.That(references, Does.Contain("VirtioPanic.Hosting").And.Contain("Serilog").And.Contain("System.CommandLine"));
        });
    }

    [Test]
    public void NoPublicTypes() => Assert.That(Subject.GetExportedTypes(), Is.Empty);

    private static bool IsAllowed(string name) =>
        name is "System" or "netstandard" or "mscorlib" or "System.CommandLine" or "Serilog"
        || (name.StartsWith("VirtioPanic.", StringComparison.Ordinal) && !name.EndsWith(".Tests", StringComparison.Ordinal) && name != "VirtioPanic.Benchmarks")
        || name.StartsWith("Serilog.", StringComparison.Ordinal)
        || name == "OpenTelemetry" || name.StartsWith("OpenTelemetry.", StringComparison.Ordinal)
        || name.StartsWith("Microsoft.Extensions.", StringComparison.Ordinal)
        || name.StartsWith("System.", StringComparison.Ordinal);
}
