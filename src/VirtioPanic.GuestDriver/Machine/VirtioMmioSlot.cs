namespace VirtioPanic.GuestDriver.Machine;

/// <summary>A virtio-mmio device the firmware describes: its register window and its interrupt line.</summary>
/// <param name="Base">Guest-physical base of the register window.</param>
/// <param name="Size">Window size in bytes.</param>
/// <param name="Line">Interrupt line (level-triggered).</param>
public readonly record struct VirtioMmioSlot(ulong Base, ulong Size, int Line);
