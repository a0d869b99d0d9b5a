namespace VirtioPanic.Transport;

/// <summary>
/// Why a guest register access was refused. Refused reads return zeros (or the value the spec
/// gives) and refused writes are dropped; each is counted per kind and logged at debug level with
/// a rate limit.
/// </summary>
public enum InvalidAccessKind
{
    /// <summary>Not an invalid access (a valid one).</summary>
    None = 0,

    /// <summary>The offset is not a multiple of the access width, or the access straddles two registers.</summary>
    Misaligned,

    /// <summary>The register exists but not at this access width (e.g. a 4-byte access to a 16-bit field).</summary>
    WrongWidth,

    /// <summary>The access lies (partly) outside the configuration space, BAR or register window.</summary>
    OutOfRange,

    /// <summary>No register is defined at this offset.</summary>
    Reserved,

    /// <summary>A write to a read-only register.</summary>
    ReadOnly,

    /// <summary>A read of a write-only register.</summary>
    WriteOnly,

    /// <summary>The register refused the value (queue reconfigured while enabled, features after FEATURES_OK, no such queue, a status the state machine refused...).</summary>
    Rejected,
}
