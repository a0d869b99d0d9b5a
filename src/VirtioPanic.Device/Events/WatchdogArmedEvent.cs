namespace VirtioPanic.Device;

/// <summary>The watchdog was armed, by a heartbeat or a START request.</summary>
public sealed record WatchdogArmedEvent : WatchdogEvent
{
    /// <summary>The timeout it was armed with.</summary>
    public required TimeSpan Timeout { get; init; }

    /// <summary>True when a baseline heartbeat armed it, false for a START request.</summary>
    public bool ByHeartbeat { get; init; }

    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.Armed;
}
