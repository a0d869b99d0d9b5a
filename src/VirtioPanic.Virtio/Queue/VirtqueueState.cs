namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// A queue's device-side state for snapshot and migration. Restoring treats it as untrusted input
/// and validates it like a fresh activation (lesson of CVE-2013-4151 and friends).
/// </summary>
/// <remarks>
/// In-flight chains (popped but not yet used) are not part of this record: the device owns them
/// and saves their <see cref="ChainToken"/>s itself.
/// </remarks>
public readonly record struct VirtqueueState
{
    /// <summary>Ring layout.</summary>
    public VirtqueueFormat Format { get; init; }

    /// <summary>Negotiated ring features.</summary>
    public VirtqueueFeatures Features { get; init; }

    /// <summary>Whether the queue was activated.</summary>
    public bool Ready { get; init; }

    /// <summary>Queue size and area addresses.</summary>
    public VirtqueueConfig Config { get; init; }

    /// <summary>Split: next available-ring entry to consume. Packed: next descriptor slot to look at.</summary>
    public ushort NextAvail { get; init; }

    /// <summary>Split: next used-ring entry (= published used.idx). Packed: next slot to write a used descriptor to.</summary>
    public ushort NextUsed { get; init; }

    /// <summary>Packed: wrap counter expected on the next available descriptor.</summary>
    public bool AvailWrapCounter { get; init; }

    /// <summary>Packed: wrap counter written into the next used descriptor.</summary>
    public bool UsedWrapCounter { get; init; }
}
