namespace VirtioPanic.Device;

/// <summary>
/// The watchdog expired: the VM ran for <see cref="Timeout"/> without a keepalive. The device has
/// disarmed; what happens to the VM is the host's policy. Never dropped.
/// </summary>
public sealed record WatchdogExpiredEvent : WatchdogEvent
{
    /// <summary>The timeout that elapsed.</summary>
    public required TimeSpan Timeout { get; init; }

    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.Expired;
}
