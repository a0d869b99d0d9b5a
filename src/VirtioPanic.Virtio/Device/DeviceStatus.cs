namespace VirtioPanic.Virtio.Device;

/// <summary>Device status bits (virtio 1.2 §2.1 "Device Status Field").</summary>
[Flags]
public enum DeviceStatus : byte
{
    /// <summary>Reset / power-on value.</summary>
    None = 0,

    /// <summary>ACKNOWLEDGE: the guest noticed the device.</summary>
    Acknowledge = 0x01,

    /// <summary>DRIVER: the guest has a driver for it.</summary>
    Driver = 0x02,

    /// <summary>DRIVER_OK: the driver is set up; the device is live.</summary>
    DriverOk = 0x04,

    /// <summary>FEATURES_OK: feature negotiation is complete (the device accepted the driver's subset).</summary>
    FeaturesOk = 0x08,

    /// <summary>DEVICE_NEEDS_RESET: the device hit an error it cannot recover from without a reset.</summary>
    DeviceNeedsReset = 0x40,

    /// <summary>FAILED: the driver gave up on the device.</summary>
    Failed = 0x80,
}
