namespace VirtioPanic.Virtio.Device;

/// <summary>
/// Device-independent feature bits as 64-bit masks (virtio 1.2 §6 "Reserved Feature Bits").
/// Device-type bits occupy 0–23 and 50–127; transport and ring bits 24–40.
/// </summary>
public static class VirtioFeatures
{
    /// <summary>VIRTIO_F_INDIRECT_DESC (28): indirect descriptor tables.</summary>
    public const ulong IndirectDescriptors = 1UL << 28;

    /// <summary>VIRTIO_F_EVENT_IDX (29): <c>used_event</c>/<c>avail_event</c> notification suppression.</summary>
    public const ulong EventIndex = 1UL << 29;

    /// <summary>VIRTIO_F_VERSION_1 (32): a modern (virtio 1.x) device; this project offers nothing else.</summary>
    public const ulong Version1 = 1UL << 32;

    /// <summary>VIRTIO_F_ACCESS_PLATFORM (33): device accesses go through a platform IOMMU. Not offered.</summary>
    public const ulong AccessPlatform = 1UL << 33;

    /// <summary>VIRTIO_F_RING_PACKED (34): the packed ring layout.</summary>
    public const ulong RingPacked = 1UL << 34;

    /// <summary>VIRTIO_F_IN_ORDER (35): buffers are used in the order they were made available.</summary>
    public const ulong InOrder = 1UL << 35;

    /// <summary>VIRTIO_F_ORDER_PLATFORM (36): hardware memory-ordering semantics. Not offered by a software device.</summary>
    public const ulong OrderPlatform = 1UL << 36;

    /// <summary>VIRTIO_F_SR_IOV (37). Not offered.</summary>
    public const ulong SrIov = 1UL << 37;

    /// <summary>VIRTIO_F_NOTIFICATION_DATA (38): notifications carry the driver's next offset and wrap counter.</summary>
    public const ulong NotificationData = 1UL << 38;

    /// <summary>VIRTIO_F_NOTIF_CONFIG_DATA (39, PCI only): notifications carry <c>queue_notif_config_data</c>.</summary>
    public const ulong NotifConfigData = 1UL << 39;

    /// <summary>VIRTIO_F_RING_RESET (40): per-queue reset.</summary>
    public const ulong RingReset = 1UL << 40;

    /// <summary>Every ring feature the queue engine implements; a device may offer any subset of these.</summary>
    public const ulong RingFeatures = IndirectDescriptors | EventIndex | RingPacked;

    /// <summary>Maps negotiated feature bits to the ring features a <see cref="Queue.Virtqueue"/> needs.</summary>
    /// <param name="negotiated">The features both sides accepted.</param>
    public static Queue.VirtqueueFeatures ToQueueFeatures(ulong negotiated)
    {
        Queue.VirtqueueFeatures features = Queue.VirtqueueFeatures.None;
        if ((negotiated & IndirectDescriptors) != 0)
        {
            features |= Queue.VirtqueueFeatures.IndirectDescriptors;
        }

        if ((negotiated & EventIndex) != 0)
        {
            features |= Queue.VirtqueueFeatures.EventIndex;
        }

        if ((negotiated & RingPacked) != 0)
        {
            features |= Queue.VirtqueueFeatures.Packed;
        }

        if ((negotiated & InOrder) != 0)
        {
            features |= Queue.VirtqueueFeatures.InOrder;
        }

        return features;
    }
}
