namespace VirtioPanic.GuestDriver.Virtio;

/// <summary>A queue a driver wants: its index and its size.</summary>
/// <param name="Index">Queue index.</param>
/// <param name="Size">Requested size, capped at the device's maximum; 0 for the device's maximum (at most 256).</param>
public readonly record struct QueueSetup(int Index, ushort Size = 0);
