namespace VirtioPanic.GuestDriver.Rings;

/// <summary>One buffer a guest driver puts in a chain.</summary>
/// <param name="Address">Guest-physical address.</param>
/// <param name="Length">Length in bytes.</param>
/// <param name="DeviceWritable">True for a buffer the device writes (VIRTQ_DESC_F_WRITE).</param>
public readonly record struct DriverBuffer(ulong Address, uint Length, bool DeviceWritable);
