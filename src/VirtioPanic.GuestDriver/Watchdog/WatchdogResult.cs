namespace VirtioPanic.GuestDriver.Watchdog;

/// <summary>What a watchdog operation returned, as the Linux watchdog core's error codes say it.</summary>
public enum WatchdogResult
{
    /// <summary>Done (0).</summary>
    Ok,

    /// <summary>NOWAYOUT forbids it, or the device is already open (<c>-EBUSY</c>).</summary>
    Busy,

    /// <summary>The device or the negotiated features do not support it (<c>-EOPNOTSUPP</c>).</summary>
    NotSupported,

    /// <summary>A value outside the device's bounds (<c>-EINVAL</c>).</summary>
    InvalidArgument,

    /// <summary>The device did not answer in time, answered wrongly, or needs a reset (<c>-EIO</c>).</summary>
    DeviceError,
}
