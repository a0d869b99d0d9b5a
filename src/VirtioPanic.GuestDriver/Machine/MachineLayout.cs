namespace VirtioPanic.GuestDriver.Machine;

/// <summary>What the firmware tables (ACPI, a device tree) tell the guest kernel about the machine.</summary>
public sealed class MachineLayout
{
    /// <summary>Guest-physical start of the RAM the guest kernel may allocate from.</summary>
    public required ulong GuestRamBase { get; init; }

    /// <summary>Bytes of RAM the guest kernel may allocate from.</summary>
    public required ulong GuestRamSize { get; init; }

    /// <summary>The PCI host bridge, or null when the machine has no PCI.</summary>
    public PciHostBridgeLayout? Pci { get; init; }

    /// <summary>The virtio-mmio devices (Linux: <c>virtio_mmio.device=size@base:irq</c>).</summary>
    public IReadOnlyList<VirtioMmioSlot> MmioDevices { get; init; } = [];
}
