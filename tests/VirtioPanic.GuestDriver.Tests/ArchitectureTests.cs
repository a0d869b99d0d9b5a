using System.Reflection;
using VirtioPanic.GuestDriver.Rings;

namespace VirtioPanic.GuestDriver.Tests;

// Guards the layering rule of style.md §6 for VirtioPanic.GuestDriver: Virtio, Transport, Device
// (public API only) and the BCL; never Hosting or the host program.
public sealed class ArchitectureTests
{
    [Test]
    public void Assembly_ReferencesOnlyVirtioTransportDeviceAndTheBcl()
    {
        Assembly subject = typeof(SplitRingDriver).Assembly;
        string[] references = [.. subject.GetReferencedAssemblies().Select(a => a.Name!)];

        Assert.That(references.Where(n => !IsAllowed(n)), Is.Empty);
    }

    private static bool IsAllowed(string name) =>
        name is "VirtioPanic.Virtio" or "VirtioPanic.Transport" or "VirtioPanic.Device" or "System" or "netstandard" or "mscorlib"
        || name.StartsWith("System.", StringComparison.Ordinal)
        || name.StartsWith("Microsoft.Extensions.Logging.Abstractions", StringComparison.Ordinal);
}
