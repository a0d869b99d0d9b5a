namespace VirtioPanic.GuestDriver.Kernel;

/// <summary>How the guest kernel reaches PCI configuration space.</summary>
public enum PciConfigMechanism
{
    /// <summary>ECAM when the machine has it, else the configuration ports (what Linux prefers).</summary>
    Auto,

    /// <summary>Enhanced configuration access: memory-mapped, one 4 KiB page per function (Linux <c>pci_mmcfg</c>).</summary>
    Ecam,

    /// <summary>Configuration mechanism #1: an address written to port 0xCF8, data through 0xCFC (Linux <c>pci_conf1</c>).</summary>
    Ports,
}
