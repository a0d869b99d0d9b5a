namespace VirtioPanic.GuestDriver.Machine;

/// <summary>A guest's memory-mapped I/O: loads and stores a vCPU makes to guest-physical addresses that are not RAM.</summary>
/// <remarks>Thread-safe: any vCPU may access it at any time.</remarks>
public interface IMmioBus
{
    /// <summary>A load of <c>data.Length</c> bytes (1, 2, 4 or 8) from <paramref name="address"/>.</summary>
    /// <param name="address">Guest-physical address.</param>
    /// <param name="data">Receives the bytes; all ones when nothing claims the address.</param>
    /// <returns>False when no device claims the address (a master abort on real hardware).</returns>
    bool TryRead(ulong address, Span<byte> data);

    /// <summary>A store of <c>data.Length</c> bytes (1, 2, 4 or 8) to <paramref name="address"/>.</summary>
    /// <param name="address">Guest-physical address.</param>
    /// <param name="data">The bytes stored.</param>
    /// <returns>False when no device claims the address (the store is dropped).</returns>
    bool TryWrite(ulong address, ReadOnlySpan<byte> data);
}
