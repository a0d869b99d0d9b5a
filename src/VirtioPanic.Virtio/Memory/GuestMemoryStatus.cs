namespace VirtioPanic.Virtio.Memory;

/// <summary>
/// The outcome of translating a guest-physical range. Guest-supplied addresses never cause an
/// exception: every access API reports one of these values instead.
/// </summary>
public enum GuestMemoryStatus : byte
{
    /// <summary>The whole range lies inside one region.</summary>
    Ok = 0,

    /// <summary>The range starts, or ends, outside every region.</summary>
    OutOfRange,

    /// <summary><c>address + length</c> overflows 64 bits.</summary>
    AddressOverflow,

    /// <summary>The range starts in one region and ends in another (or in a hole between them).</summary>
    CrossesRegionBoundary,

    /// <summary>An atomic access was asked for at an address that is not naturally aligned.</summary>
    Misaligned,

    /// <summary>The range is longer than one contiguous host view can describe (more than 2^32 - 1 bytes).</summary>
    TooLong,
}
