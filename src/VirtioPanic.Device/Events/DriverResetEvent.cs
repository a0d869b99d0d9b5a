namespace VirtioPanic.Device;

/// <summary>The driver reset a device it had brought up (DRIVER_OK): the guest unloaded its driver, rebooted, or kexec'd.</summary>
public sealed record DriverResetEvent : WatchdogEvent
{
    /// <summary>True when the watchdog was armed with NOWAYOUT and keeps running across the reset.</summary>
    public bool WatchdogKeptRunning { get; init; }

    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.DriverReset;
}
