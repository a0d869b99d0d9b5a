using Microsoft.Extensions.Time.Testing;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Tests.Devices;
using VirtioPanic.GuestDriver.Virtio;

namespace VirtioPanic.GuestDriver.Tests.Machine;

// The same guest drivers run unchanged on a machine model that is not ours.
public sealed class HypervisorMachineTests
{
    [Test]
    public void SameGuestDrivers_OnAHypervisorSuppliedMachine_ProbeAndEchoOverPciAndMmio()
    {
        var pciDevice = new EchoDevice();
        var mmioDevice = new EchoDevice();
        using var machine = new HypervisorMachine(pciDevice, mmioDevice, new FakeTimeProvider());
        using GuestKernel guest = GuestKernel.Boot(machine);

        (int Pci, int Mmio) completed = guest.Run(() =>
        {
            int[] done = new int[2];
            for (int i = 0; i < 2; i++)
            {
                GuestVirtioDevice device = guest.FindVirtioDevice(EchoDevice.Id, i);
                if (device.Initialize(new VirtioDriverOptions { Features = EchoDevice.FeatureEcho, Queues = [new QueueSetup(0, 32)] }) != VirtioInitResult.Ok)
                {
                    return (-1, -1);
                }

                var client = new EchoClient(guest, device.Queue(0));
                client.RunToCompletion(1000, TimeSpan.FromSeconds(1));
                done[i] = client.Mismatches == 0 ? client.Completed.Distinct().Count() : -1;
            }

            return (done[0], done[1]);
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(guest.PciConfigMechanism, Is.EqualTo(PciConfigMechanism.Ports), "no ECAM on this machine");
            Assert.That(guest.VirtioDevices.Select(d => d.TransportKind), Is.EqualTo(new[] { VirtioTransportKind.Pci, VirtioTransportKind.Mmio }));
            Assert.That(guest.VirtioDevices[0].Location, Does.StartWith("pci 0000:00:03.0"));
            Assert.That(completed, Is.EqualTo((1000, 1000)));
            Assert.That(pciDevice.Completed(0), Is.EqualTo(1000));
            Assert.That(mmioDevice.Completed(0), Is.EqualTo(1000));
            Assert.That(guest.VirtioDevices[0].InterruptMode, Is.EqualTo(VirtioInterruptMode.MsixPerQueue));
            Assert.That(machine.Messages, Is.GreaterThan(0));
            Assert.That(guest.Allocator.Memory.Regions[0].GuestAddress, Is.EqualTo(HypervisorMachine.RamBase));
        }
    }
}
