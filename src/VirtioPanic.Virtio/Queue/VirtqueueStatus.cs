namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// The outcome of a queue operation. Anything other than <see cref="Ok"/> and <see cref="Empty"/>
/// is an error; errors caused by guest data are sticky: the queue stops until it is reset or
/// re-activated, and its owner decides whether to set DEVICE_NEEDS_RESET (virtio 1.2 §2.1.2).
/// </summary>
public enum VirtqueueStatus : byte
{
    /// <summary>Success.</summary>
    Ok = 0,

    /// <summary>No buffers are available.</summary>
    Empty,

    /// <summary>The queue is not activated (or was reset).</summary>
    NotReady,

    // --- configuration, checked once at activation or restore ---

    /// <summary>Queue size zero, above the maximum, or (split) not a power of two.</summary>
    InvalidSize,

    /// <summary>Descriptor area not aligned as the ring format requires (split 16, packed 16).</summary>
    MisalignedDescriptorArea,

    /// <summary>Driver area not aligned (split available ring 2, packed event suppression 4).</summary>
    MisalignedDriverArea,

    /// <summary>Device area not aligned (split used ring 4, packed event suppression 4).</summary>
    MisalignedDeviceArea,

    /// <summary>Descriptor area not wholly inside one guest memory region.</summary>
    DescriptorAreaOutOfRange,

    /// <summary>Driver area not wholly inside one guest memory region.</summary>
    DriverAreaOutOfRange,

    /// <summary>Device area not wholly inside one guest memory region.</summary>
    DeviceAreaOutOfRange,

    /// <summary>The ring format or a ring feature is not supported by this engine.</summary>
    UnsupportedFeature,

    /// <summary>Saved state is inconsistent (indices further apart than the queue size).</summary>
    InvalidState,

    // --- guest data, checked on every pop ---

    /// <summary>The available index moved more than the queue size ahead (or went backwards).</summary>
    AvailIndexRunaway,

    /// <summary>A head index from the available ring is not below the queue size.</summary>
    HeadIndexOutOfRange,

    /// <summary>A <c>next</c> index is outside the descriptor table (or indirect table).</summary>
    DescriptorIndexOutOfRange,

    /// <summary>The chain has more descriptors than the table holds (a loop) or than the queue's chain limit.</summary>
    ChainTooLong,

    /// <summary>A buffer has length zero.</summary>
    ZeroLengthBuffer,

    /// <summary>A device-readable buffer follows a device-writable one (virtio 1.2 §2.7.4.2).</summary>
    ReadableAfterWritable,

    /// <summary>A buffer's address range overflows or is not wholly inside one guest memory region.</summary>
    BufferOutOfRange,

    /// <summary>The chain's total length exceeds 2^32 - 1 bytes (virtio 1.2 §2.7.5.2).</summary>
    TotalLengthOverflow,

    /// <summary>A descriptor carries flag bits the ring format does not define.</summary>
    InvalidDescriptorFlags,

    /// <summary>INDIRECT used although VIRTIO_F_INDIRECT_DESC was not negotiated.</summary>
    IndirectNotNegotiated,

    /// <summary>INDIRECT and NEXT both set on one descriptor (virtio 1.2 §2.7.5.3.1).</summary>
    IndirectWithNext,

    /// <summary>An INDIRECT descriptor inside an indirect table (virtio 1.2 §2.7.5.3.1).</summary>
    NestedIndirect,

    /// <summary>An indirect table's length is zero or not a multiple of 16.</summary>
    IndirectTableInvalidLength,

    /// <summary>An indirect table is not wholly inside one guest memory region.</summary>
    IndirectTableOutOfRange,

    /// <summary>Packed ring: a buffer id is not below the queue size, or is already in flight.</summary>
    InvalidBufferId,

    /// <summary>Packed ring: a chain's descriptors disagree about availability (wrap counter / AVAIL/USED bits).</summary>
    WrapCounterMismatch,

    // --- device-side misuse ---

    /// <summary>A used entry was added for a chain that is not in flight (device bug, not guest input).</summary>
    InvalidUsedEntry,
}
