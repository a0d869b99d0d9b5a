namespace VirtioPanic.GuestDriver.Machine;

/// <summary>Size and layout of a <see cref="TestMachine"/>.</summary>
public sealed class TestMachineOptions
{
    /// <summary>Guest-physical base of RAM.</summary>
    /// <remarks>Defaults to 0.</remarks>
    public ulong RamBase { get; init; }

    /// <summary>RAM size in bytes.</summary>
    /// <remarks>Defaults to 32 MiB. The guest kernel keeps the first MiB for itself, as a PC's does.</remarks>
    public ulong RamSize { get; init; } = 32UL << 20;

    /// <summary>The machine clock: the guest's timeouts and timers and the recorded interrupt times run on it.</summary>
    /// <remarks>Defaults to <see cref="TimeProvider.System"/>; tests pass a fake clock to control time.</remarks>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    /// <summary>Guest-physical base of the PCI ECAM window (1 MiB for bus 0), or null for no ECAM.</summary>
    /// <remarks>Defaults to 0xB0000000.</remarks>
    public ulong? EcamBase { get; init; } = 0xB000_0000;

    /// <summary>Whether the PCI configuration mechanism #1 (ports 0xCF8/0xCFC) is present.</summary>
    /// <remarks>Defaults to true.</remarks>
    public bool ConfigPorts { get; init; } = true;

    /// <summary>Base of the window firmware places PCI memory BARs in.</summary>
    /// <remarks>Defaults to 0xC0000000.</remarks>
    public ulong PciMemoryBase { get; init; } = 0xC000_0000;

    /// <summary>Size of the PCI memory window.</summary>
    /// <remarks>Defaults to 256 MiB.</remarks>
    public ulong PciMemorySize { get; init; } = 0x1000_0000;

    /// <summary>Interrupt line of INTA# on device 0 (the PCI swizzle starts here).</summary>
    /// <remarks>Defaults to 16, as on a PC's I/O APIC.</remarks>
    public int PciIntxLineBase { get; init; } = 16;

    /// <summary>Guest-physical base of the first virtio-mmio device; the next ones follow every 4 KiB.</summary>
    /// <remarks>Defaults to 0xD0000000.</remarks>
    public ulong VirtioMmioBase { get; init; } = 0xD000_0000;

    /// <summary>Interrupt line of the first virtio-mmio device; the next ones take the following lines.</summary>
    /// <remarks>Defaults to 5.</remarks>
    public int VirtioMmioFirstLine { get; init; } = 5;
}
