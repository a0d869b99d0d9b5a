namespace VirtioPanic.Virtio.Device;

/// <summary>
/// What <see cref="VirtioDeviceController.WriteStatus"/> did with a driver's write to the device
/// status field (virtio 1.2 §2.1 "Device Status Field", §3.1.1 "Driver Requirements: Device
/// Initialization"). Values other than <see cref="Accepted"/>, <see cref="Reset"/> and
/// <see cref="Activated"/> describe a refused or partly ignored write that a transport counts and logs.
/// </summary>
public enum DeviceStatusWriteResult : byte
{
    /// <summary>The bits were recorded.</summary>
    Accepted = 0,

    /// <summary>0 was written: the device was reset and the status reads 0 (§2.4 "Device Reset").</summary>
    Reset,

    /// <summary>DRIVER_OK was set: the device was activated with the negotiated features and enabled queues.</summary>
    Activated,

    /// <summary>FEATURES_OK refused: the driver accepted a feature the device did not offer (§2.2.1, §2.2.2).</summary>
    FeaturesRefusedUnoffered,

    /// <summary>FEATURES_OK refused: the driver did not accept VIRTIO_F_VERSION_1, which this modern-only device requires (§6.2).</summary>
    FeaturesRefusedWithoutVersion1,

    /// <summary>FEATURES_OK refused: the device's <see cref="IVirtioDevice.AcceptFeatures"/> rejected the subset (§2.2.2).</summary>
    FeaturesRefusedByDevice,

    /// <summary>FEATURES_OK refused: ACKNOWLEDGE and DRIVER were not both set first (§3.1.1).</summary>
    FeaturesOkOutOfOrder,

    /// <summary>DRIVER_OK refused: FEATURES_OK is not set (§3.1.1).</summary>
    DriverOkWithoutFeaturesOk,

    /// <summary>DRIVER_OK refused: the device has set DEVICE_NEEDS_RESET and must be reset first (§2.1.2).</summary>
    DriverOkWhileNeedsReset,

    /// <summary>The write would have cleared bits the driver set earlier; the driver must reset instead (§2.1.1). Ignored.</summary>
    ClearedBitsIgnored,

    /// <summary>The write set reserved bits; they were dropped and the rest recorded.</summary>
    ReservedBitsIgnored,
}
