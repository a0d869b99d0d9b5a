using VirtioPanic.Device;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Transport.Tests;

// The package readme's example (src/VirtioPanic.Transport/README.md), verbatim, run.
public sealed class ReadmePackageExampleTests
{
    [Test]
    public void PackageReadme_MmioWiring_ReadsTheMagicValue()
    {
        using var guestMemory = GuestMemory.CreateAnonymous(1UL << 20);
        var interrupts = new RecordingInterruptSink();

        // README-SNIPPET: src/VirtioPanic.Transport/README.md
        using var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "wdt0" });
        var mmio = new VirtioMmioTransport(device, guestMemory, interrupts /* IInterruptSink */);
        ulong size = mmio.RegionSize;                          // map [base, base + size) on your MMIO bus
        Span<byte> magic = stackalloc byte[4];
        mmio.Read(0, magic);                                   // an MMIO read exit at base + 0: "virt"
        // END-README-SNIPPET

        using (Assert.EnterMultipleScope())
        {
            Assert.That(magic.ToArray(), Is.EqualTo("virt"u8.ToArray()));
            Assert.That(size, Is.GreaterThanOrEqualTo(0x200UL), "the register block and the device configuration");
        }
    }
}
