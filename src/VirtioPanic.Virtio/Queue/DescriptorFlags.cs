namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// Descriptor flag bits (virtio 1.2 §2.7.5 "The Virtqueue Descriptor Table" for split rings,
/// §2.8.1 "Driver and Device Ring Wrap Counters" for the packed-only AVAIL/USED bits).
/// </summary>
[Flags]
public enum DescriptorFlags : ushort
{
    /// <summary>No flags: a single device-readable buffer.</summary>
    None = 0,

    /// <summary>VIRTQ_DESC_F_NEXT: the chain continues (split: at <c>next</c>; packed: in the next slot).</summary>
    Next = 0x1,

    /// <summary>VIRTQ_DESC_F_WRITE: the buffer is device-writable (otherwise device-readable).</summary>
    Write = 0x2,

    /// <summary>VIRTQ_DESC_F_INDIRECT: the buffer holds a table of descriptors (needs VIRTIO_F_INDIRECT_DESC).</summary>
    Indirect = 0x4,

    /// <summary>VIRTQ_DESC_F_AVAIL (packed ring only, bit 7).</summary>
    Available = 1 << 7,

    /// <summary>VIRTQ_DESC_F_USED (packed ring only, bit 15).</summary>
    Used = 1 << 15,
}
