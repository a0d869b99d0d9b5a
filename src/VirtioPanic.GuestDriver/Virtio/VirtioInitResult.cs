namespace VirtioPanic.GuestDriver.Virtio;

/// <summary>How a step of device initialization ended.</summary>
public enum VirtioInitResult
{
    /// <summary>Done.</summary>
    Ok,

    /// <summary>The device did not read back status 0 after the reset write.</summary>
    ResetTimedOut,

    /// <summary>The device does not offer VIRTIO_F_VERSION_1 (Linux refuses such a modern device).</summary>
    NoVersion1,

    /// <summary>FEATURES_OK did not stick: the device refused the accepted subset.</summary>
    FeaturesRejected,

    /// <summary>A requested queue does not exist (maximum size 0) or is already enabled.</summary>
    QueueUnavailable,

    /// <summary>The device did not accept a queue's configuration (queue not enabled, or DEVICE_NEEDS_RESET set).</summary>
    QueueRejected,

    /// <summary>DRIVER_OK did not stick, or the device needs a reset.</summary>
    DeviceFailed,
}
