using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Device;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Fuzz.Targets;

internal enum TransportKind
{
    Pci,
    Mmio,
}

// A fresh watchdog device behind a fresh virtio-pci function or virtio-mmio device, over the
// shared fuzz guest memory and a fake clock (timers fire only when an op advances it), so every
// input starts from power-on and runs deterministically.
internal sealed class TransportRig : IDisposable
{
    internal TransportRig(TransportKind kind, FuzzGuestMemory guest, int msixVectors)
    {
        Kind = kind;
        Guest = guest;
        Time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        Device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "fuzz", EventCapacity = 16 }, Time);
        if (kind == TransportKind.Pci)
        {
            Pci = new VirtioPciFunction(Device, guest.Memory, Interrupts, new VirtioPciFunctionOptions { MsixVectorCount = msixVectors });
        }
        else
        {
            Mmio = new VirtioMmioTransport(Device, guest.Memory, Interrupts);
        }
    }

    internal TransportKind Kind { get; }

    internal FuzzGuestMemory Guest { get; }

    internal FakeTimeProvider Time { get; }

    internal WatchdogDevice Device { get; }

    internal VirtioPciFunction? Pci { get; }

    internal VirtioMmioTransport? Mmio { get; }

    internal CountingInterrupts Interrupts { get; } = new();

    internal byte[] SaveState() => Pci is not null ? Pci.SaveState() : Mmio!.SaveState();

    internal SnapshotStatus RestoreState(ReadOnlySpan<byte> snapshot) => Pci is not null ? Pci.RestoreState(snapshot) : Mmio!.RestoreState(snapshot);

    // The host drains what the device reports, as the policy service would.
    internal void DrainEvents()
    {
        while (Device.Events.TryRead(out _))
        {
        }
    }

    public void Dispose()
    {
        DrainEvents();
        Device.Dispose();
    }

    internal sealed class CountingInterrupts : IInterruptSink
    {
        internal long Signals { get; private set; }

        public void SignalMsi(ulong address, uint data) => Signals++;

        public void SetIntxLevel(bool asserted)
        {
            if (asserted)
            {
                Signals++;
            }
        }
    }
}
