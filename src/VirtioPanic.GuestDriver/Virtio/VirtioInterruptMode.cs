namespace VirtioPanic.GuestDriver.Virtio;

/// <summary>How a device's interrupts reach the guest (what Linux's <c>vp_find_vqs</c> ends up with).</summary>
public enum VirtioInterruptMode
{
    /// <summary>Not set up yet; as a preference: try MSI-X with a vector per queue, then MSI-X shared, then the line.</summary>
    Auto,

    /// <summary>MSI-X: one vector for configuration changes and one per queue.</summary>
    MsixPerQueue,

    /// <summary>MSI-X: one vector for configuration changes and one shared by every queue.</summary>
    MsixShared,

    /// <summary>The legacy level-triggered line (PCI INTx with the ISR register, or the virtio-mmio interrupt line).</summary>
    Line,
}
