namespace VirtioPanic.Hosting;

/// <summary>An event the journal shows as accepted from the guest but never decided, or decided but with no recorded outcome: the process stopped before finishing the action.</summary>
public sealed record UnactedJournalEntry
{
    /// <summary>The run (service start) that journaled it.</summary>
    public required string Run { get; init; }

    /// <summary>The record's id within that run.</summary>
    public required long RecordId { get; init; }

    /// <summary>The device.</summary>
    public required string DeviceId { get; init; }

    /// <summary>The device event's sequence number.</summary>
    public required long Sequence { get; init; }

    /// <summary>The event's QMP-style name.</summary>
    public required string Name { get; init; }

    /// <summary>The policy action that was decided but not confirmed; empty when the device accepted the event but the service stopped before deciding on it.</summary>
    public required string PolicyAction { get; init; }

    /// <summary>When it was journaled.</summary>
    public required DateTimeOffset Time { get; init; }

    /// <summary>The journal line as written.</summary>
    public required string Line { get; init; }
}
