using System.Reflection;
using VirtioPanic.Transport.Pci;

namespace VirtioPanic.Transport.Tests;

// Guards the layering rule of style.md §6 for VirtioPanic.Transport: it may reference the virtio
// engine, Microsoft.Extensions.Logging.Abstractions and the BCL, nothing else (not the device,
// hosting or host projects).
public sealed class ArchitectureTests
{
    private static readonly string[] s_allowed = ["VirtioPanic.Virtio", "Microsoft.Extensions.Logging.Abstractions"];

    [Test]
    public void Assembly_ReferencesOnlyVirtioLoggingAbstractionsAndTheBcl()
    {
        Assembly subject = typeof(VirtioPciFunction).Assembly;
        string[] references = [.. subject.GetReferencedAssemblies().Select(a => a.Name!)];

        Assert.Multiple(() =>
        {
            Assert.That(references.Where(n => !IsBcl(n) && !s_allowed.Contains(n)), Is.Empty, "VirtioPanic.Transport may reference Virtio, Logging.Abstractions and the BCL only");
            Assert.That(references, Does.Contain("VirtioPanic.Virtio"));
        });
    }

    [Test]
    public void PublicTypes_AreOnlyTheTransportsTheirOptionsAndRegisterMaps()
    {
        string[] expected =
        [
            "InvalidAccessKind", "TransportMetrics", "VirtioTransportOptions",
            "MsixRegisters", "PciBarChangedEventArgs", "PciBarMapping", "PciConfigRegisters", "VirtioDoorbell",
            "VirtioPciCapabilityRegisters", "VirtioPciCommonConfigRegisters", "VirtioPciFunction", "VirtioPciFunctionOptions",
            "VirtioMmioTransport", "VirtioMmioOptions", "VirtioMmioRegisters",
        ];

        string[] actual = [.. typeof(VirtioPciFunction).Assembly.GetExportedTypes().Select(t => t.Name)];

        Assert.That(actual, Is.EquivalentTo(expected));
    }

    private static bool IsBcl(string name) =>
        name is "System" or "netstandard" or "mscorlib" || name.StartsWith("System.", StringComparison.Ordinal);
}
