namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// What the driver programmed for one queue before enabling it: its size and the guest-physical
/// addresses of the three areas (virtio 1.2 §2.6 "Virtqueues": Descriptor Area, Driver Area,
/// Device Area; split ring: descriptor table, available ring, used ring).
/// </summary>
/// <param name="Size">Queue size chosen by the driver.</param>
/// <param name="DescriptorArea">Guest-physical address of the Descriptor Area.</param>
/// <param name="DriverArea">Guest-physical address of the Driver Area.</param>
/// <param name="DeviceArea">Guest-physical address of the Device Area.</param>
public readonly record struct VirtqueueConfig(ushort Size, ulong DescriptorArea, ulong DriverArea, ulong DeviceArea);
