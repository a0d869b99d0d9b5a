namespace VirtioPanic.Transport;

/// <summary>Options common to the virtio transports.</summary>
public class VirtioTransportOptions
{
    /// <summary>Whether to offer VIRTIO_F_RING_RESET (per-queue reset, virtio 1.2 §2.6.1).</summary>
    /// <remarks>Defaults to true.</remarks>
    public bool OfferRingReset { get; init; } = true;

    /// <summary>
    /// How many invalid guest accesses are logged (at debug level) per second; the rest are only
    /// counted, and the number skipped is logged with the next message, so a hostile guest cannot
    /// flood the host log.
    /// </summary>
    /// <remarks>Defaults to 20. 0 logs none.</remarks>
    public int InvalidAccessLogLimitPerSecond { get; init; } = 20;

    /// <summary>Clock for the log rate limit.</summary>
    /// <remarks>Defaults to <see cref="TimeProvider.System"/>.</remarks>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
