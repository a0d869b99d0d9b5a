namespace VirtioPanic.Transport.Pci;

/// <summary>
/// Offsets and bits of the PCI type-0 configuration header (PCI Local Bus 3.0 §6.1–6.2; values
/// as in Linux <c>pci_regs.h</c>).
/// </summary>
/// <remarks>
/// <code>
/// 0x00 u16 Vendor ID (RO)           0x02 u16 Device ID (RO)
/// 0x04 u16 Command (RW bits 1,2,10) 0x06 u16 Status (bit 3 RO live, bit 4 RO 1, bits 8,11-15 RW1C)
/// 0x08 u8  Revision ID (RO)         0x09 u24 Class code (RO)
/// 0x0C u8  Cache line size (RW)     0x0D u8 Latency timer (RO 0)  0x0E u8 Header type (RO 0)  0x0F u8 BIST (RO 0)
/// 0x10 u32 BAR0..BAR5 (sizing protocol)
/// 0x28 u32 CardBus CIS (RO 0)       0x2C u16 Subsystem vendor ID  0x2E u16 Subsystem ID (RO)
/// 0x30 u32 Expansion ROM (RO 0)     0x34 u8  Capabilities pointer (RO)
/// 0x3C u8  Interrupt line (RW)      0x3D u8  Interrupt pin (RO 1 = INTA#)
/// </code>
/// </remarks>
public static class PciConfigRegisters
{
    /// <summary>Vendor ID (16 bits).</summary>
    public const int VendorId = 0x00;

    /// <summary>Device ID (16 bits).</summary>
    public const int DeviceId = 0x02;

    /// <summary>Command (16 bits).</summary>
    public const int Command = 0x04;

    /// <summary>Status (16 bits).</summary>
    public const int Status = 0x06;

    /// <summary>Revision ID (8 bits).</summary>
    public const int RevisionId = 0x08;

    /// <summary>Programming interface, the low byte of the class code.</summary>
    public const int ProgrammingInterface = 0x09;

    /// <summary>Sub-class (8 bits).</summary>
    public const int SubClass = 0x0A;

    /// <summary>Base class (8 bits).</summary>
    public const int BaseClass = 0x0B;

    /// <summary>Cache line size (8 bits, RW scratch).</summary>
    public const int CacheLineSize = 0x0C;

    /// <summary>Latency timer (8 bits).</summary>
    public const int LatencyTimer = 0x0D;

    /// <summary>Header type (8 bits; 0 = type-0 single-function).</summary>
    public const int HeaderType = 0x0E;

    /// <summary>BAR0 (32 bits); BAR n is at <c>Bar0 + 4 * n</c>.</summary>
    public const int Bar0 = 0x10;

    /// <summary>Subsystem vendor ID (16 bits).</summary>
    public const int SubsystemVendorId = 0x2C;

    /// <summary>Subsystem ID (16 bits).</summary>
    public const int SubsystemId = 0x2E;

    /// <summary>Expansion ROM base address (32 bits).</summary>
    public const int ExpansionRom = 0x30;

    /// <summary>Capabilities pointer (8 bits): offset of the first capability.</summary>
    public const int CapabilitiesPointer = 0x34;

    /// <summary>Interrupt line (8 bits, RW scratch for the OS).</summary>
    public const int InterruptLine = 0x3C;

    /// <summary>Interrupt pin (8 bits; 1 = INTA#).</summary>
    public const int InterruptPin = 0x3D;

    /// <summary>Command bit 1: memory space decoding.</summary>
    public const ushort CommandMemorySpace = 0x0002;

    /// <summary>Command bit 2: bus master (DMA and MSI writes).</summary>
    public const ushort CommandBusMaster = 0x0004;

    /// <summary>Command bit 10: INTx emulation disable.</summary>
    public const ushort CommandInterruptDisable = 0x0400;

    /// <summary>Status bit 3: INTx interrupt pending.</summary>
    public const ushort StatusInterrupt = 0x0008;

    /// <summary>Status bit 4: a capability list is present.</summary>
    public const ushort StatusCapabilityList = 0x0010;

    /// <summary>BAR bits 2:1 = 10b: a 64-bit memory BAR.</summary>
    public const uint BarMemoryType64 = 0x4;

    /// <summary>Capability list entry: capability ID (byte 0).</summary>
    public const int CapabilityId = 0;

    /// <summary>Capability list entry: next pointer (byte 1); 0 ends the list.</summary>
    public const int CapabilityNext = 1;

    /// <summary>Capability ID of a vendor-specific capability (virtio uses these).</summary>
    public const byte CapabilityIdVendorSpecific = 0x09;

    /// <summary>Capability ID of MSI-X.</summary>
    public const byte CapabilityIdMsix = 0x11;
}
