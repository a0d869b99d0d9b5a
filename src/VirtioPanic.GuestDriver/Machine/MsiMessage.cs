namespace VirtioPanic.GuestDriver.Machine;

/// <summary>A message-signalled interrupt: the 32-bit <paramref name="Data"/> a device writes to <paramref name="Address"/>.</summary>
/// <param name="Address">Message address (x86: 0xFEE00000 plus the destination).</param>
/// <param name="Data">Message data (x86: the vector in bits 7:0).</param>
public readonly record struct MsiMessage(ulong Address, uint Data);
