using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.GuestDriver.Tests.Devices;
using VirtioPanic.GuestDriver.Virtio;

namespace VirtioPanic.GuestDriver.Tests;

// The ten-line guest-driver test the README shows, kept compiling and passing here.
public sealed class ReadmeExampleTests
{
    [Test]
    public void EchoDevice_OverPci_EchoesARequest()
    {
        using var machine = new TestMachine();
        machine.AddPciDevice(new EchoDevice());
        using GuestKernel guest = GuestKernel.Boot(machine);
        GuestVirtioDevice echo = guest.FindVirtioDevice(EchoDevice.Id);
        ulong request = guest.AllocateBuffer(4), response = guest.AllocateBuffer(4);
        guest.WriteMemory(request, [1, 2, 3, 4]);
        UsedBuffer? used = guest.Run(() => echo.Initialize(new VirtioDriverOptions()) == VirtioInitResult.Ok
            ? echo.Queue(0).Submit([new(request, 4, false), new(response, 4, true)], TimeSpan.FromSeconds(1)) : null);
        Assert.That(used?.Length, Is.EqualTo(4));
        Assert.That(guest.ReadMemory(response, 4), Is.EqualTo(new byte[] { 1, 2, 3, 4 }));
    }
}
