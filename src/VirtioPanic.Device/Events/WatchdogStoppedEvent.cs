namespace VirtioPanic.Device;

/// <summary>An armed watchdog was stopped without expiring.</summary>
public sealed record WatchdogStoppedEvent : WatchdogEvent
{
    /// <summary>Why it stopped.</summary>
    public required WatchdogStopReason Reason { get; init; }

    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.Stopped;
}
