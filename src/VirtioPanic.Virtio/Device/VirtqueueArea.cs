namespace VirtioPanic.Virtio.Device;

/// <summary>The three guest-physical areas of a virtqueue (virtio 1.2 §2.6 "Virtqueues").</summary>
public enum VirtqueueArea : byte
{
    /// <summary>Descriptor Area (<c>queue_desc</c>; split ring: the descriptor table).</summary>
    Descriptor = 0,

    /// <summary>Driver Area (<c>queue_driver</c>; split ring: the available ring).</summary>
    Driver = 1,

    /// <summary>Device Area (<c>queue_device</c>; split ring: the used ring).</summary>
    Device = 2,
}
