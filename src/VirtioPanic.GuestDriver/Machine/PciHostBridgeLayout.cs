namespace VirtioPanic.GuestDriver.Machine;

/// <summary>Where a PCI host bridge's configuration mechanisms and memory window are (bus 0 only).</summary>
public sealed class PciHostBridgeLayout
{
    /// <summary>Guest-physical base of the ECAM (enhanced configuration access) window, or null when there is none.</summary>
    public ulong? EcamBase { get; init; }

    /// <summary>Whether configuration mechanism #1 (ports 0xCF8/0xCFC) is present.</summary>
    public bool HasConfigPorts { get; init; }

    /// <summary>Guest-physical start of the window firmware places memory BARs in.</summary>
    public required ulong MemoryWindowBase { get; init; }

    /// <summary>Size of that window in bytes.</summary>
    public required ulong MemoryWindowSize { get; init; }

    /// <summary>
    /// Interrupt line of INTA# for device 0; INTx of device <c>d</c>, pin <c>p</c> (1 = INTA#) goes
    /// to <c>IntxLineBase + (d + p - 1) % 4</c>, the conventional swizzle.
    /// </summary>
    public required int IntxLineBase { get; init; }

    /// <summary>The interrupt line of a device's pin under the swizzle.</summary>
    /// <param name="device">Device number on bus 0.</param>
    /// <param name="pin">Interrupt pin, 1 (INTA#) to 4 (INTD#).</param>
    public int IntxLine(int device, int pin) => IntxLineBase + ((device + pin - 1) % 4);
}
