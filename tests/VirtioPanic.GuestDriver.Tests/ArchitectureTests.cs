using System.Reflection;
using VirtioPanic.GuestDriver.Rings;

namespace VirtioPanic.GuestDriver.Tests;

// Guards the layering rule of style.md §6 for VirtioPanic.GuestDriver: Virtio, Transport, Device
// (public API only) and the BCL; never Hosting or the host program. And keeps the public surface
// deliberate: the machine-model interfaces and machine, the virtio core's device handle, the
// rings, the watchdog drivers and the scenario API are public; every helper is internal.
public sealed class ArchitectureTests
{
    private static readonly string[] s_publicNamespaces =
    [
        "VirtioPanic.GuestDriver.Kernel",
        "VirtioPanic.GuestDriver.Machine",
        "VirtioPanic.GuestDriver.Memory",
        "VirtioPanic.GuestDriver.Rings",
        "VirtioPanic.GuestDriver.Virtio",
        "VirtioPanic.GuestDriver.Watchdog",
    ];

    [Test]
    public void Assembly_ReferencesOnlyVirtioTransportDeviceAndTheBcl()
    {
        Assembly subject = typeof(SplitRingDriver).Assembly;
        string[] references = [.. subject.GetReferencedAssemblies().Select(a => a.Name!)];

        Assert.That(references.Where(n => !IsAllowed(n)), Is.Empty);
    }

    [Test]
    public void PublicSurface_OnlyTheMachineModelCoreDriversAndScenarioApi()
    {
        Type[] exported = typeof(SplitRingDriver).Assembly.GetExportedTypes();
        string[] helpers = ["PciConfigAccess", "PciFirmware", "PciFunctionInfo", "GuestTransport", "PciModernTransport", "MmioTransport", "MmioRegion", "MachineInterruptSink", "WatchdogWire", "RecordBuffer"];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(exported.Select(t => t.Namespace).Distinct(), Is.SubsetOf(s_publicNamespaces));
            Assert.That(exported.Select(t => t.Name), Has.None.AnyOf(helpers));
            Assert.That(exported.Select(t => t.Name), Is.SupersetOf(new[] { "IGuestMachine", "IMmioBus", "IPortIoBus", "IGuestInterruptController", "TestMachine", "GuestKernel", "GuestVirtioDevice", "WatchdogDriver", "BaselineWatchdogDriver" }));
        }
    }

    private static bool IsAllowed(string name) =>
        name is "VirtioPanic.Virtio" or "VirtioPanic.Transport" or "VirtioPanic.Device" or "System" or "netstandard" or "mscorlib"
        || name.StartsWith("System.", StringComparison.Ordinal)
        || name.StartsWith("Microsoft.Extensions.Logging.Abstractions", StringComparison.Ordinal);
}
