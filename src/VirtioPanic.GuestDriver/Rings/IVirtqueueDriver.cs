using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Rings;

/// <summary>
/// The driver side of one virtqueue, whichever ring format was negotiated: what a guest driver's
/// virtio core uses to post buffers, kick, and reap completions.
/// </summary>
/// <remarks>Single producer: one thread at a time.</remarks>
public interface IVirtqueueDriver
{
    /// <summary>Queue size and area addresses, as programmed into the transport.</summary>
    VirtqueueConfig Config { get; }

    /// <summary>Descriptors (split) or ring slots (packed) still free.</summary>
    int FreeCount { get; }

    /// <summary>Chains posted and not yet reaped.</summary>
    int InFlightCount { get; }

    /// <summary>Adds a chain of direct descriptors; nothing is visible to the device before <see cref="Publish"/>.</summary>
    /// <param name="buffers">Readable buffers first, then writable ones.</param>
    /// <param name="id">The id the device will return for this chain.</param>
    /// <returns>False when the ring is full.</returns>
    bool TryAdd(ReadOnlySpan<DriverBuffer> buffers, out ushort id);

    /// <summary>Adds a chain as one indirect descriptor.</summary>
    /// <param name="buffers">Readable buffers first, then writable ones.</param>
    /// <param name="id">The id the device will return for this chain.</param>
    /// <returns>False when the ring is full.</returns>
    bool TryAddIndirect(ReadOnlySpan<DriverBuffer> buffers, out ushort id);

    /// <summary>Makes every chain added since the last call visible to the device.</summary>
    void Publish();

    /// <summary>Whether the device asked to be notified about what was published since the last call.</summary>
    bool NeedsKick();

    /// <summary>Reaps one completed chain.</summary>
    /// <param name="used">The chain's id and the length the device wrote.</param>
    UsedBufferStatus TryGetUsed(out UsedBuffer used);

    /// <summary>Asks the device not to interrupt.</summary>
    void DisableInterrupts();

    /// <summary>Asks for an interrupt at the next completion; true when one is already waiting (reap before sleeping).</summary>
    bool EnableInterrupts();
}
