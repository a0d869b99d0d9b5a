namespace VirtioPanic.Device;

/// <summary>The watchdog reached its pretimeout point: the guest was sent a notice and has <see cref="TimeLeft"/> of run time before the bite.</summary>
public sealed record WatchdogPretimeoutEvent : WatchdogEvent
{
    /// <summary>Run time left until expiry when the pretimeout fired.</summary>
    public required TimeSpan TimeLeft { get; init; }

    /// <summary>The watchdog timeout.</summary>
    public required TimeSpan Timeout { get; init; }

    /// <summary>The pretimeout (how long before expiry the notice fires).</summary>
    public required TimeSpan Pretimeout { get; init; }

    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.Pretimeout;
}
