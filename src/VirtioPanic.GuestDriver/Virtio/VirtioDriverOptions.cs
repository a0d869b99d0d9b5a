namespace VirtioPanic.GuestDriver.Virtio;

/// <summary>What a guest driver asks of a virtio device at initialization.</summary>
public sealed class VirtioDriverOptions
{
    /// <summary>
    /// Feature bits the driver supports: device-type bits and ring bits (VIRTIO_F_EVENT_IDX,
    /// VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED). The driver accepts their intersection with
    /// what the device offers, plus VIRTIO_F_VERSION_1.
    /// </summary>
    /// <remarks>Defaults to 0 (only VERSION_1).</remarks>
    public ulong Features { get; init; }

    /// <summary>The queues to set up.</summary>
    /// <remarks>Defaults to queue 0 at the device's maximum size.</remarks>
    public IReadOnlyList<QueueSetup> Queues { get; init; } = [new QueueSetup(0)];

    /// <summary>Interrupt preference.</summary>
    /// <remarks>Defaults to <see cref="VirtioInterruptMode.Auto"/>. Virtio-mmio always uses its line.</remarks>
    public VirtioInterruptMode Interrupts { get; init; } = VirtioInterruptMode.Auto;

    /// <summary>Entries per indirect table when VIRTIO_F_INDIRECT_DESC is negotiated; 0 for no indirect tables.</summary>
    /// <remarks>Defaults to 0.</remarks>
    public int MaxIndirect { get; init; }
}
