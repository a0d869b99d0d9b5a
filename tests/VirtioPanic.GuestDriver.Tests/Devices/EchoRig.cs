using Microsoft.Extensions.Time.Testing;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.Transport;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.GuestDriver.Tests.Devices;

// A test machine on a fake clock with one EchoDevice behind the chosen transport, and a booted guest.
internal sealed class EchoRig : IDisposable
{
    internal EchoRig(VirtioTransportKind transport, EchoDevice? device = null, VirtioPciFunctionOptions? pciOptions = null, GuestKernelOptions? kernelOptions = null)
    {
        Time = new FakeTimeProvider(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));
        Machine = new TestMachine(new TestMachineOptions { Clock = Time });
        Device = device ?? new EchoDevice();
        if (transport == VirtioTransportKind.Pci)
        {
            Pci = Machine.AddPciDevice(Device, pciOptions);
        }
        else
        {
            Mmio = Machine.AddMmioDevice(Device);
        }

        Guest = GuestKernel.Boot(Machine, kernelOptions ?? new GuestKernelOptions { HangTimeout = TimeSpan.FromSeconds(10) });
        Echo = Guest.FindVirtioDevice(EchoDevice.Id);
    }

    internal FakeTimeProvider Time { get; }

    internal TestMachine Machine { get; }

    internal EchoDevice Device { get; }

    internal VirtioPciFunction? Pci { get; }

    internal VirtioMmioTransport? Mmio { get; }

    internal GuestKernel Guest { get; }

    internal GuestVirtioDevice Echo { get; }

    internal long InvalidAccessCount => Pci?.InvalidAccessCount ?? Mmio!.InvalidAccessCount;

    internal long DroppedNotificationCount => Pci?.DroppedNotificationCount ?? Mmio!.DroppedNotificationCount;

    internal long GetInvalidAccessCount(InvalidAccessKind kind) => Pci?.GetInvalidAccessCount(kind) ?? Mmio!.GetInvalidAccessCount(kind);

    internal VirtioInitResult Initialize(ulong features = EchoDevice.FeatureEcho | VirtioFeatures.EventIndex, VirtioInterruptMode interrupts = VirtioInterruptMode.Auto, ushort size = 64, int maxIndirect = 0) =>
        Guest.Run(() => Echo.Initialize(new VirtioDriverOptions
        {
            Features = features,
            Queues = [new QueueSetup(0, size), new QueueSetup(1, size)],
            Interrupts = interrupts,
            MaxIndirect = maxIndirect,
        }));

    // Host side: lets `total` of machine time pass in `step`s, letting the guest settle before each.
    internal void Advance(TimeSpan total, TimeSpan step)
    {
        for (TimeSpan done = TimeSpan.Zero; done < total; done += step)
        {
            Guest.WaitForQuiescence();
            Time.Advance(step);
        }

        Guest.WaitForQuiescence();
    }

    public void Dispose()
    {
        Guest.Dispose();
        Machine.Dispose();
    }
}
