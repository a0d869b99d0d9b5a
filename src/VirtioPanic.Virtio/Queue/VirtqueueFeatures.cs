namespace VirtioPanic.Virtio.Queue;

/// <summary>Negotiated ring features that change how a queue parses and notifies.</summary>
[Flags]
public enum VirtqueueFeatures : byte
{
    /// <summary>None.</summary>
    None = 0,

    /// <summary>VIRTIO_F_INDIRECT_DESC (bit 28): indirect descriptor tables are allowed.</summary>
    IndirectDescriptors = 0x1,

    /// <summary>VIRTIO_F_EVENT_IDX (bit 29): <c>used_event</c>/<c>avail_event</c> (packed: DESC event mode).</summary>
    EventIndex = 0x2,

    /// <summary>VIRTIO_F_RING_PACKED (bit 34): the packed ring layout.</summary>
    Packed = 0x4,

    /// <summary>VIRTIO_F_IN_ORDER (bit 35): buffers are used in the order they were made available.</summary>
    InOrder = 0x8,
}
