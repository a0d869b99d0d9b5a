namespace VirtioPanic.Hosting.Tests;

// Guards the layering rule of src/README.md §1 for VirtioPanic.Hosting: Device, Virtio (only for
// Dumps/, which reads guest memory; the policy service itself uses no Virtio type),
// Microsoft.Extensions.Hosting.Abstractions / Options / Logging.Abstractions (and what they are
// built on: DI, Configuration and Diagnostics abstractions) and the BCL; never Transport,
// GuestDriver, Host, or Serilog.
public sealed class ArchitectureTests
{
    private static readonly string[] s_allowed =
    [
        "VirtioPanic.Device",
        "VirtioPanic.Virtio",   // Dumps/ElfCoreWriter only: it reads guest memory (GuestMemory)
        "Microsoft.Extensions.Hosting.Abstractions", "Microsoft.Extensions.Options", "Microsoft.Extensions.Logging.Abstractions",
        "Microsoft.Extensions.DependencyInjection.Abstractions", "Microsoft.Extensions.Configuration.Abstractions",
        "Microsoft.Extensions.Configuration.Binder", "Microsoft.Extensions.Options.ConfigurationExtensions",
        "Microsoft.Extensions.Diagnostics.Abstractions", "Microsoft.Extensions.Primitives",
    ];

    [Test]
    public void Assembly_ReferencesOnlyWhatStyleSection6Allows()
    {
        string[] references = [.. typeof(PolicyService).Assembly.GetReferencedAssemblies().Select(a => a.Name!)];

        Assert.Multiple(() =>
        {
            Assert.That(references.Where(n => !s_allowed.Contains(n) && n is not ("System" or "netstandard" or "mscorlib") && !n.StartsWith("System.", StringComparison.Ordinal)), Is.Empty);
            Assert.That(references, Has.None.StartsWith("VirtioPanic.Transport").And.None.StartsWith("VirtioPanic.GuestDriver").And.None.StartsWith("VirtioPanic.Host,").And.None.StartsWith("Serilog"));
            Assert.That(references, Does.Contain("VirtioPanic.Device"));
        });
    }

    [Test]
    public void InternalsStayInternal()
    {
        Type[] exported = typeof(PolicyService).Assembly.GetExportedTypes();

        // Qmp/ exports the QMP-backed IVmControl and its options; its client and framing stay internal.
        Assert.That(exported.Select(t => t.Namespace).Distinct().Order(StringComparer.Ordinal), Is.EqualTo(new[] { "VirtioPanic.Hosting", "VirtioPanic.Hosting.Control", "VirtioPanic.Hosting.Dumps", "VirtioPanic.Hosting.Qmp" }), "Policy/ and Journal/ are internal");
        // Control/ exports the management socket; its commands and connections stay internal.
        Assert.That(exported.Where(t => t.Namespace == "VirtioPanic.Hosting.Control").Select(t => t.Name), Is.EqualTo(new[] { "ManagementSocket" }));
        // Dumps/ exports the ELF core writer and its vCPU description; its layout stays internal.
        Assert.That(exported.Where(t => t.Namespace == "VirtioPanic.Hosting.Dumps").Select(t => t.Name).Order(StringComparer.Ordinal), Is.EqualTo(new[] { "Amd64Register", "ElfCoreCpu", "ElfCoreWriter" }));
        Assert.That(exported.Where(t => t.Namespace == "VirtioPanic.Hosting.Qmp").Select(t => t.Name).Order(StringComparer.Ordinal), Is.EqualTo(new[] { "QmpVmControl", "QmpVmControlOptions" }));
    }
}
