using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

/// <summary>One device in the management query: what the device says and what the policy service has in force.</summary>
public sealed record DeviceReport
{
    /// <summary>The device's id.</summary>
    public required string DeviceId { get; init; }

    /// <summary>Whether the device still exists (not disposed).</summary>
    public required bool IsPresent { get; init; }

    /// <summary>Whether a guest driver has the device up (DRIVER_OK).</summary>
    public required bool DriverBound { get; init; }

    /// <summary>The device-specific features offered.</summary>
    public required WatchdogFeatures OfferedFeatures { get; init; }

    /// <summary>The device-specific features the driver negotiated.</summary>
    public required WatchdogFeatures NegotiatedFeatures { get; init; }

    /// <summary>Whether the watchdog is armed.</summary>
    public required bool Armed { get; init; }

    /// <summary>The watchdog timeout in force.</summary>
    public required TimeSpan Timeout { get; init; }

    /// <summary>Run time left before expiry; null while disarmed.</summary>
    public TimeSpan? TimeLeft { get; init; }

    /// <summary>Whether the watchdog expired and has not been re-armed.</summary>
    public required bool Expired { get; init; }

    /// <summary>Whether the device's run-time clock is paused (the VM is paused).</summary>
    public required bool VmPaused { get; init; }

    /// <summary>The most recent event the device produced.</summary>
    public WatchdogEvent? LastEvent { get; init; }

    /// <summary>The policy set for the device (configuration or <see cref="PolicyService.SetPolicyAsync"/>).</summary>
    public required DevicePolicy Policy { get; init; }

    /// <summary>The panic action actually in force: <see cref="PanicAction.Preserve"/> while the storm guard is tripped.</summary>
    public required PanicAction EffectivePanicAction { get; init; }

    /// <summary>Whether the panic-storm guard has switched the device to preserve.</summary>
    public required bool StormGuardTripped { get; init; }

    /// <summary>What the policy service believes about the guest.</summary>
    public required GuestCondition Condition { get; init; }

    /// <summary>A pending deadline (grace window, crash kernel), if any.</summary>
    public PendingDeadline? Deadline { get; init; }

    /// <summary>The most recent event the policy service handled, with its outcome.</summary>
    public HandledEvent? LastHandled { get; init; }

    /// <summary>Events handled for this device since it was attached.</summary>
    public required long EventsHandled { get; init; }
}
