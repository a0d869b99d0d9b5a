namespace VirtioPanic.Virtio.Device;

/// <summary>
/// The outcome of restoring a transport or controller snapshot. A snapshot is untrusted input: on
/// any result other than <see cref="Ok"/> the restored object is left in its power-on state.
/// </summary>
public enum SnapshotStatus : byte
{
    /// <summary>The state was restored.</summary>
    Ok = 0,

    /// <summary>Truncated, wrong magic, or trailing bytes.</summary>
    Malformed,

    /// <summary>The snapshot format version is not supported.</summary>
    UnsupportedVersion,

    /// <summary>The snapshot was taken from a different device or function (identity, features, queue count or sizes differ).</summary>
    DeviceMismatch,

    /// <summary>A field holds a value the live object could never have had (inconsistent status, bad vector, misaligned BAR...).</summary>
    InvalidState,

    /// <summary>A queue's saved ring state failed validation against guest memory.</summary>
    QueueRestoreFailed,
}
