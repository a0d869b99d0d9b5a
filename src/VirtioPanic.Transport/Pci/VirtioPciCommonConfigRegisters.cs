namespace VirtioPanic.Transport.Pci;

/// <summary>
/// Offsets in the virtio-pci common configuration structure (virtio 1.2 §4.1.4.3
/// "Common configuration structure layout"; 1.3 adds the admin queue fields at 60 and 62).
/// </summary>
/// <remarks>
/// <code>
/// off width field                     access  notes
///  0   4    device_feature_select     RW
///  4   4    device_feature            RO      offered bits of the window; 0 beyond bit 63
///  8   4    driver_feature_select     RW
/// 12   4    driver_feature            RW      read back as written; locked after FEATURES_OK
/// 16   2    config_msix_vector        RW      0xFFFF = NO_VECTOR
/// 18   2    num_queues                RO
/// 20   1    device_status             RW      0 resets (synchronously here)
/// 21   1    config_generation         RO
/// 22   2    queue_select              RW      fields 24..59 address this queue
/// 24   2    queue_size                RW      max after reset; 0 = no such queue
/// 26   2    queue_msix_vector         RW
/// 28   2    queue_enable              RW      the driver writes 1 only
/// 30   2    queue_notify_off          RO      = queue index here (multiplier 4)
/// 32   8    queue_desc                RW      two independent 32-bit halves
/// 40   8    queue_driver              RW
/// 48   8    queue_device              RW
/// 56   2    queue_notify_data         RO      0: VIRTIO_F_NOTIF_CONFIG_DATA not offered
/// 58   2    queue_reset               RW      VIRTIO_F_RING_RESET; reads 0 (reset is synchronous)
/// 60   2    admin_queue_index         RO      0: no admin queues (1.3)
/// 62   2    admin_queue_num           RO      0
/// </code>
/// Every field is accessed at its own width and alignment; 64-bit fields as two 32-bit halves
/// (§4.1.3.1). Queue fields other than queue_msix_vector are ignored while the queue is enabled.
/// </remarks>
public static class VirtioPciCommonConfigRegisters
{
    /// <summary>device_feature_select (le32).</summary>
    public const int DeviceFeatureSelect = 0;

    /// <summary>device_feature (le32, RO).</summary>
    public const int DeviceFeature = 4;

    /// <summary>driver_feature_select (le32).</summary>
    public const int DriverFeatureSelect = 8;

    /// <summary>driver_feature (le32).</summary>
    public const int DriverFeature = 12;

    /// <summary>config_msix_vector (le16).</summary>
    public const int ConfigMsixVector = 16;

    /// <summary>num_queues (le16, RO).</summary>
    public const int NumQueues = 18;

    /// <summary>device_status (u8).</summary>
    public const int DeviceStatus = 20;

    /// <summary>config_generation (u8, RO).</summary>
    public const int ConfigGeneration = 21;

    /// <summary>queue_select (le16).</summary>
    public const int QueueSelect = 22;

    /// <summary>queue_size (le16).</summary>
    public const int QueueSize = 24;

    /// <summary>queue_msix_vector (le16).</summary>
    public const int QueueMsixVector = 26;

    /// <summary>queue_enable (le16).</summary>
    public const int QueueEnable = 28;

    /// <summary>queue_notify_off (le16, RO).</summary>
    public const int QueueNotifyOff = 30;

    /// <summary>queue_desc low half (le32); high half at +4.</summary>
    public const int QueueDescLow = 32;

    /// <summary>queue_desc high half (le32).</summary>
    public const int QueueDescHigh = 36;

    /// <summary>queue_driver low half (le32).</summary>
    public const int QueueDriverLow = 40;

    /// <summary>queue_driver high half (le32).</summary>
    public const int QueueDriverHigh = 44;

    /// <summary>queue_device low half (le32).</summary>
    public const int QueueDeviceLow = 48;

    /// <summary>queue_device high half (le32).</summary>
    public const int QueueDeviceHigh = 52;

    /// <summary>queue_notify_data (le16, RO; 1.3 name queue_notif_config_data).</summary>
    public const int QueueNotifyData = 56;

    /// <summary>queue_reset (le16).</summary>
    public const int QueueReset = 58;

    /// <summary>admin_queue_index (le16, RO, virtio 1.3).</summary>
    public const int AdminQueueIndex = 60;

    /// <summary>admin_queue_num (le16, RO, virtio 1.3).</summary>
    public const int AdminQueueNum = 62;

    /// <summary>Size of the structure presented here (the 1.3 layout; 1.2 drivers use the first 60 bytes).</summary>
    public const int Size = 64;

    /// <summary>VIRTIO_MSI_NO_VECTOR: no MSI-X vector mapped.</summary>
    public const ushort NoVector = 0xFFFF;
}
