using VirtioPanic.GuestDriver.Tests.Devices;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.Transport.Pci;

namespace VirtioPanic.GuestDriver.Tests.Virtio;

// Linux's vp_find_vqs fallbacks when the function has fewer MSI-X vectors than queues + 1
// (virtio-mmio has only its line, so these are PCI only).
public sealed class PciInterruptFallbackTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(1);

    // The guest initialises the device and runs 200 echo requests on queue 0.
    private static EchoClient Run200(EchoRig rig)
    {
        Assert.That(rig.Initialize(), Is.EqualTo(VirtioInitResult.Ok));
        return rig.Guest.Run(() =>
        {
            var c = new EchoClient(rig.Guest, rig.Echo.Queue(0));
            c.RunToCompletion(200, s_timeout);
            return c;
        });
    }

    [Test]
    public void Interrupts_OneMsixVector_FallsBackToTheLine()
    {
        using var rig = new EchoRig(VirtioTransportKind.Pci, pciOptions: new VirtioPciFunctionOptions { MsixVectorCount = 1 });
        EchoClient client = Run200(rig);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Echo.InterruptMode, Is.EqualTo(VirtioInterruptMode.Line));
            Assert.That(client.Completed, Has.Count.EqualTo(200));
            Assert.That(rig.Machine.Interrupts.MessageCount, Is.Zero);
            Assert.That(rig.Machine.Interrupts.GetLineAssertionCount(17), Is.GreaterThan(0));
        }
    }

    [Test]
    public void Interrupts_TwoMsixVectors_QueuesShareOne()
    {
        using var rig = new EchoRig(VirtioTransportKind.Pci, pciOptions: new VirtioPciFunctionOptions { MsixVectorCount = 2 });
        EchoClient client = Run200(rig);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Echo.InterruptMode, Is.EqualTo(VirtioInterruptMode.MsixShared));
            Assert.That(client.Completed, Has.Count.EqualTo(200));
            Assert.That(rig.Machine.Interrupts.MessageCount, Is.GreaterThan(0));
            Assert.That(rig.Echo.Queue(1).InterruptCount, Is.Zero, "a shared interrupt is not queue 1's when it has nothing used");
        }
    }
}
