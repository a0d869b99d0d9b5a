namespace VirtioPanic.Transport.Pci;

/// <summary>
/// Layout of the virtio vendor-specific PCI capabilities and their <c>cfg_type</c> values
/// (virtio 1.2 §4.1.4 "Virtio Structure PCI Capabilities").
/// </summary>
/// <remarks>
/// <code>
/// struct virtio_pci_cap          (16 bytes)     extensions
///   +0  u8   cap_vndr = 0x09                      notify:  +16 le32 notify_off_multiplier (cap_len 20)
///   +1  u8   cap_next                             pci_cfg: +16 u8[4] pci_cfg_data         (cap_len 20)
///   +2  u8   cap_len
///   +3  u8   cfg_type
///   +4  u8   bar
///   +5  u8   id
///   +8  le32 offset (within the BAR)
///   +12 le32 length
/// </code>
/// </remarks>
public static class VirtioPciCapabilityRegisters
{
    /// <summary>cap_len (byte).</summary>
    public const int CapLength = 2;

    /// <summary>cfg_type (byte).</summary>
    public const int ConfigType = 3;

    /// <summary>bar (byte): BAR index 0–5.</summary>
    public const int Bar = 4;

    /// <summary>id (byte).</summary>
    public const int Id = 5;

    /// <summary>offset (le32) of the structure within the BAR.</summary>
    public const int Offset = 8;

    /// <summary>length (le32) of the structure.</summary>
    public const int Length = 12;

    /// <summary>notify_off_multiplier (le32), in the NOTIFY capability only.</summary>
    public const int NotifyOffMultiplier = 16;

    /// <summary>pci_cfg_data (4 bytes), in the PCI_CFG capability only.</summary>
    public const int PciConfigData = 16;

    /// <summary>VIRTIO_PCI_CAP_COMMON_CFG.</summary>
    public const byte TypeCommonConfig = 1;

    /// <summary>VIRTIO_PCI_CAP_NOTIFY_CFG.</summary>
    public const byte TypeNotifyConfig = 2;

    /// <summary>VIRTIO_PCI_CAP_ISR_CFG.</summary>
    public const byte TypeIsrConfig = 3;

    /// <summary>VIRTIO_PCI_CAP_DEVICE_CFG.</summary>
    public const byte TypeDeviceConfig = 4;

    /// <summary>VIRTIO_PCI_CAP_PCI_CFG.</summary>
    public const byte TypePciConfig = 5;
}
