namespace VirtioPanic.GuestDriver.Virtio;

/// <summary>Which virtio transport a guest device sits behind.</summary>
public enum VirtioTransportKind
{
    /// <summary>virtio-pci, modern (virtio 1.2 §4.1).</summary>
    Pci,

    /// <summary>virtio-mmio, version 2 (virtio 1.2 §4.2).</summary>
    Mmio,
}
