namespace VirtioPanic.Device;

/// <summary>The guest panicked and a crash kernel will handle it; the host should record it and let the guest run (pvpanic CRASH_LOADED). Never dropped.</summary>
public sealed record GuestCrashLoadedEvent : GuestReportEvent
{
    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.GuestCrashLoaded;
}
