namespace VirtioPanic.Transport.Pci;

/// <summary>Where one of the function's memory BARs currently decodes in guest-physical address space.</summary>
/// <param name="BarIndex">The BAR index (the low index of a 64-bit pair).</param>
/// <param name="Address">Guest-physical base address as programmed by the guest or firmware.</param>
/// <param name="Size">Size in bytes (a power of two).</param>
/// <param name="IsEnabled">Whether memory decoding is on (Command bit 1); when false, the range is not claimed.</param>
public readonly record struct PciBarMapping(int BarIndex, ulong Address, ulong Size, bool IsEnabled);
