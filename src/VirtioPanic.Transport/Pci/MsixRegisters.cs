namespace VirtioPanic.Transport.Pci;

/// <summary>
/// The MSI-X capability and table layout (PCI Local Bus 3.0 §6.8.2; Linux <c>pci_regs.h</c>
/// <c>PCI_MSIX_*</c>).
/// </summary>
/// <remarks>
/// <code>
/// capability (12 bytes)                         table entry (16 bytes, vector n at 16 * n)
///   +0 u8  cap id 0x11                            +0  u32 message address low
///   +1 u8  next                                   +4  u32 message address high
///   +2 u16 message control                        +8  u32 message data
///          bits 10:0 table size - 1 (RO)          +12 u32 vector control: bit 0 mask (1 after reset)
///          bit 14 function mask, bit 15 enable  PBA: one pending bit per vector, in 64-bit words (RO)
///   +4 u32 table offset | BIR (bits 2:0)
///   +8 u32 PBA offset | BIR
/// </code>
/// The table and PBA accept aligned 4- and 8-byte accesses.
/// </remarks>
public static class MsixRegisters
{
    /// <summary>Message control (le16) in the capability.</summary>
    public const int MessageControl = 2;

    /// <summary>Table offset and BAR indicator (le32) in the capability.</summary>
    public const int TableOffset = 4;

    /// <summary>PBA offset and BAR indicator (le32) in the capability.</summary>
    public const int PbaOffset = 8;

    /// <summary>Length of the capability.</summary>
    public const int CapabilityLength = 12;

    /// <summary>Message control: table size minus one.</summary>
    public const ushort TableSizeMask = 0x07FF;

    /// <summary>Message control: function mask.</summary>
    public const ushort FunctionMask = 0x4000;

    /// <summary>Message control: MSI-X enable.</summary>
    public const ushort Enable = 0x8000;

    /// <summary>Size of one table entry.</summary>
    public const int EntrySize = 16;

    /// <summary>Entry: message address, low 32 bits.</summary>
    public const int EntryAddressLow = 0;

    /// <summary>Entry: message address, high 32 bits.</summary>
    public const int EntryAddressHigh = 4;

    /// <summary>Entry: message data.</summary>
    public const int EntryData = 8;

    /// <summary>Entry: vector control.</summary>
    public const int EntryVectorControl = 12;

    /// <summary>Vector control: the vector is masked.</summary>
    public const uint VectorMasked = 0x1;
}
