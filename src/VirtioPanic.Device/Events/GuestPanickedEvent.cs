namespace VirtioPanic.Device;

/// <summary>The guest panicked and wants the host to apply its panic policy (pvpanic PANICKED). Never dropped.</summary>
public sealed record GuestPanickedEvent : GuestReportEvent
{
    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.GuestPanicked;
}
