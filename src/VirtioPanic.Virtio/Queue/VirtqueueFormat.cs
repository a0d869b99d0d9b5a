namespace VirtioPanic.Virtio.Queue;

/// <summary>The ring layout a queue uses, fixed by feature negotiation (VIRTIO_F_RING_PACKED).</summary>
public enum VirtqueueFormat : byte
{
    /// <summary>Split virtqueue (virtio 1.2 §2.7).</summary>
    Split = 0,

    /// <summary>Packed virtqueue (virtio 1.2 §2.8).</summary>
    Packed = 1,
}
