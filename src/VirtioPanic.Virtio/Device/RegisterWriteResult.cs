namespace VirtioPanic.Virtio.Device;

/// <summary>
/// What <see cref="VirtioDeviceController"/> did with a driver's write to a feature or queue
/// register. Anything but <see cref="Accepted"/> is a guest mistake the transport counts and logs;
/// the register keeps its previous value unless the member says otherwise.
/// </summary>
public enum RegisterWriteResult : byte
{
    /// <summary>The value was recorded (or the write was a harmless no-op).</summary>
    Accepted = 0,

    /// <summary>The selected queue does not exist; nothing changed.</summary>
    NoSuchQueue,

    /// <summary>The selected queue is enabled; its configuration cannot change until it is reset (virtio 1.2 §4.1.4.3.2, §4.2.2.2).</summary>
    QueueEnabled,

    /// <summary>FEATURES_OK is set; the driver cannot accept new features any more (virtio 1.2 §3.1.1 step 5).</summary>
    FeaturesLocked,

    /// <summary>A driver-feature window above bits 0–63 was written with a non-zero value; this device has no such bits.</summary>
    FeatureWindowOutOfRange,

    /// <summary>The register belongs to a feature the driver did not negotiate (e.g. queue reset without VIRTIO_F_RING_RESET).</summary>
    FeatureNotNegotiated,

    /// <summary>The value is not valid for the register (recorded anyway where the spec says the register reads back what was written).</summary>
    InvalidValue,

    /// <summary>A queue was enabled before FEATURES_OK; the device set DEVICE_NEEDS_RESET and the queue stays disabled.</summary>
    OutOfSequence,

    /// <summary>The queue configuration failed validation; the device set DEVICE_NEEDS_RESET and the queue stays disabled.</summary>
    QueueConfigRejected,
}
