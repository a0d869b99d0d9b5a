using System.Reflection;

namespace VirtioPanic.Device.Tests;

// Guards the layering rule of style.md §6 for VirtioPanic.Device: Virtio, Logging.Abstractions and the BCL only.
public sealed class ArchitectureTests
{
    [Test]
    public void Assembly_ReferencesOnlyVirtioLoggingAbstractionsAndTheBcl()
    {
        Assembly subject = typeof(WatchdogDevice).Assembly;
        string[] references = [.. subject.GetReferencedAssemblies().Select(a => a.Name!)];

        Assert.Multiple(() =>
        {
            Assert.That(references.Where(n => !IsAllowed(n)), Is.Empty, "VirtioPanic.Device may reference VirtioPanic.Virtio, Microsoft.Extensions.Logging.Abstractions and the BCL only");
            Assert.That(references, Does.Contain("VirtioPanic.Virtio"));
        });
    }

    [Test]
    public void PublicSurface_IsSmall_EverythingElseInternal()
    {
        string[] exported = [.. typeof(WatchdogDevice).Assembly.GetExportedTypes().Select(t => t.Name).Order()];

        Assert.That(exported, Is.EquivalentTo(new[]
        {
            "DriverResetEvent", "GuestCrashLoadedEvent", "GuestPanickedEvent", "GuestProtocolErrorEvent", "GuestReportEvent", "GuestShutdownEvent",
            "IVcpuRunClock", "PanicCodeFormat", "VcpuClockSource", "VcpuRecoveredEvent", "VcpuStallExpiredEvent", "VcpuStalledEvent", "WatchdogArmedEvent", "WatchdogBootReason", "WatchdogDevice", "WatchdogDeviceMetrics", "WatchdogDeviceOptions", "WatchdogDeviceStatus",
            "WatchdogEvent", "WatchdogEventKind", "WatchdogEventSource", "WatchdogExpiredEvent", "WatchdogFeatures", "WatchdogPretimeoutEvent",
            "WatchdogProtocolError", "WatchdogStopReason", "WatchdogStoppedEvent",
        }));
    }

    private static bool IsAllowed(string name) =>
        name is "VirtioPanic.Virtio" or "Microsoft.Extensions.Logging.Abstractions" or "System" or "netstandard" or "mscorlib"
        || name.StartsWith("System.", StringComparison.Ordinal);
}
