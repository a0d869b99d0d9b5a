namespace VirtioPanic.Hosting;

/// <summary>What the policy service found in its journal when it started.</summary>
public sealed record JournalRecoveryReport
{
    /// <summary>The journal file.</summary>
    public required string Path { get; init; }

    /// <summary>Events journaled by earlier runs but never acted on (reported once, then marked recovered in the journal).</summary>
    public IReadOnlyList<UnactedJournalEntry> UnactedEvents { get; init; } = [];

    /// <summary>Bytes of a torn last line (a write cut short by a crash) that were cut off; 0 when the journal ended cleanly.</summary>
    public long TornTrailingBytes { get; init; }

    /// <summary>Complete lines that were not valid journal records (skipped).</summary>
    public int CorruptLines { get; init; }

    /// <summary>Bytes at the start of an oversized active file that were not read (start-up reads a bounded tail of it; see <see cref="VirtioPanicOptions.JournalMaxFileSize"/>); the file is then rotated. 0 normally.</summary>
    public long SkippedBytes { get; init; }

    /// <summary>Records read.</summary>
    public int Records { get; init; }

    // The recoverable entries carried into this run (one per device, the latest), each with the id
    // of its recover record; written by EventJournal.Open, resolved by PolicyService.Recovery.cs.
    internal IReadOnlyList<(UnactedJournalEntry Entry, long RecoverId)> Recoveries { get; init; } = [];

    // The escalations in progress the journal held (an "escalation" record no later record
    // settled), as JournalReader read them.
    internal IReadOnlyList<Journal.JournaledEscalation> PendingEscalations { get; init; } = [];

    // Those carried into this run (one per device, the latest), each with the id of its new
    // "escalation" record; written by EventJournal.Open, resumed or reported by PolicyService.Recovery.cs.
    internal IReadOnlyList<(Journal.JournaledEscalation Escalation, long CarriedId)> Escalations { get; init; } = [];
}
