using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.GuestDriver.Watchdog;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Pci;

namespace VirtioPanic.GuestDriver.Tests.Watchdog;

// The watchdog device on a test machine with a fake clock, behind PCI or MMIO, watched by a
// SpyDevice, with a booted guest; the host side reads the device's events.
internal sealed class WatchdogRig : IDisposable
{
    internal WatchdogRig(VirtioTransportKind transport = VirtioTransportKind.Pci, WatchdogDeviceOptions? options = null)
    {
        Time = new FakeTimeProvider(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));
        Machine = new TestMachine(new TestMachineOptions { Clock = Time });
        Device = new WatchdogDevice(options ?? new WatchdogDeviceOptions { DefaultTimeout = TimeSpan.FromSeconds(20), MinTimeout = TimeSpan.FromSeconds(2), MaxTimeout = TimeSpan.FromMinutes(10) }, Time);
        Spy = new SpyDevice(Device, Time);
        if (transport == VirtioTransportKind.Pci)
        {
            Pci = Machine.AddPciDevice(Spy);
        }
        else
        {
            Mmio = Machine.AddMmioDevice(Spy);
        }

        Guest = Boot();
    }

    internal FakeTimeProvider Time { get; }

    internal TestMachine Machine { get; }

    internal WatchdogDevice Device { get; }

    internal SpyDevice Spy { get; }

    internal VirtioPciFunction? Pci { get; }

    internal VirtioMmioTransport? Mmio { get; }

    internal GuestKernel Guest { get; private set; }

    internal GuestVirtioDevice VirtioDevice => Guest.FindVirtioDevice(WatchdogDevice.VirtioDeviceId);

    internal List<WatchdogEvent> Events { get; } = [];

    internal WatchdogDriver Probe(WatchdogDriverOptions? options = null) => Guest.Run(() => WatchdogDriver.Probe(VirtioDevice, options));

    internal T Run<T>(Func<T> step) => Guest.Run(step);

    // Host side: machine time passes in steps, the guest settles before and after each.
    internal void Advance(TimeSpan total, TimeSpan? step = null)
    {
        TimeSpan each = step ?? TimeSpan.FromSeconds(1);
        for (TimeSpan done = TimeSpan.Zero; done < total; done += each)
        {
            Guest.WaitForQuiescence();
            Time.Advance(each < total - done ? each : total - done);
        }

        Guest.WaitForQuiescence();
    }

    // Every event the device reported so far (accumulated in Events).
    internal List<WatchdogEvent> DrainEvents()
    {
        while (Device.Events.TryRead(out WatchdogEvent? e))
        {
            Events.Add(e);
        }

        return Events;
    }

    internal List<T> EventsOf<T>()
        where T : WatchdogEvent => [.. DrainEvents().OfType<T>()];

    // The host resets the VM for `reason`: the device learns the boot reason, the transport is
    // reset as at power-on, and a fresh guest boots (firmware, enumeration) on the same machine.
    internal void ResetVm(WatchdogBootReason reason)
    {
        Guest.Dispose();
        Device.OnVmReset(reason);
        Pci?.Reset();
        Mmio?.Reset();
        Guest = Boot();
    }

    public void Dispose()
    {
        Guest.Dispose();
        Device.Dispose();
        Machine.Dispose();
    }

    private GuestKernel Boot() => GuestKernel.Boot(Machine, new GuestKernelOptions { HangTimeout = TimeSpan.FromSeconds(10) });
}
