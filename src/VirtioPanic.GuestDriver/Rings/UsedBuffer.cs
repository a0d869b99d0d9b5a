namespace VirtioPanic.GuestDriver.Rings;

/// <summary>A chain the device returned.</summary>
/// <param name="Id">The chain's head descriptor index (split) or buffer id (packed).</param>
/// <param name="Length">Bytes the device says it wrote.</param>
public readonly record struct UsedBuffer(ushort Id, uint Length);
