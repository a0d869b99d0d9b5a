namespace VirtioPanic.Device;

/// <summary>The guest is shutting down normally (pvpanic SHUTDOWN). Never dropped.</summary>
public sealed record GuestShutdownEvent : GuestReportEvent
{
    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.GuestShutdown;
}
