using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

/// <summary>One device in the management query: what the device says (<see cref="Device"/>, its own status as it is) and what the policy service has in force.</summary>
public sealed record DeviceReport
{
    /// <summary>The device's id (<see cref="WatchdogDeviceStatus.DeviceId"/>).</summary>
    public string DeviceId => Device.DeviceId;

    /// <summary>What the device says about itself: presence, features, driver, watchdog timer, last event, counters.</summary>
    public required WatchdogDeviceStatus Device { get; init; }

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

    /// <summary>A staged escalation in progress (which step was carried out, which is due when), if any.</summary>
    public PendingEscalation? Escalation { get; init; }

    /// <summary>The most recent event the policy service handled, with its outcome.</summary>
    public HandledEvent? LastHandled { get; init; }

    /// <summary>Events handled for this device since it was attached.</summary>
    public required long EventsHandled { get; init; }
}
