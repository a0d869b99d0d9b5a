using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Host.Demo;

// The demo guest's view of its virtio transport: what Linux's virtio_pci_modern or virtio_mmio do,
// reduced to register accesses on the hypervisor's transport object.
internal abstract class GuestTransport
{
    internal abstract string Name { get; }

    // Firmware / enumeration: find the device and map its registers.
    internal abstract void Probe();

    internal abstract DeviceStatus ReadStatus();

    internal abstract void WriteStatus(DeviceStatus status);

    internal abstract ulong ReadDeviceFeatures();

    internal abstract void WriteDriverFeatures(ulong features);

    internal abstract ushort SetUpQueue(int index, ushort wanted, ulong descriptors, ulong driver, ulong device);

    internal abstract void Kick(int queue);

    internal abstract uint ReadConfig32(uint offset);

    internal abstract void WriteConfig32(uint offset, uint value);

    // The hypervisor resets the function (VM reset): BARs and registers go back to power-on state.
    internal abstract void HostReset();
}
