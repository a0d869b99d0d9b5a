namespace VirtioPanic.Device;

/// <summary>Why an armed watchdog stopped without expiring.</summary>
public enum WatchdogStopReason
{
    /// <summary>The driver sent STOP.</summary>
    DriverStop,

    /// <summary>The driver reset the device (and NOWAYOUT was not set).</summary>
    DeviceReset,

    /// <summary>The host reset the VM (<see cref="WatchdogDevice.OnVmReset"/>).</summary>
    VmReset,
}
