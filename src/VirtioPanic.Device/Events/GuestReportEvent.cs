namespace VirtioPanic.Device;

/// <summary>
/// A report the guest made about itself: a panic, a loaded crash kernel, or a shutdown. From the
/// minimal path it carries no payload; from a record it carries codes, a message and optionally
/// the tail of the kernel log.
/// </summary>
public abstract record GuestReportEvent : WatchdogEvent
{
    /// <summary>Which path delivered the report.</summary>
    public required WatchdogEventSource Source { get; init; }

    /// <summary>The driver's record sequence number; null for the minimal path.</summary>
    public uint? RecordSequence { get; init; }

    /// <summary>How to read <see cref="Codes"/>.</summary>
    public PanicCodeFormat CodeFormat { get; init; }

    /// <summary>Up to five 64-bit codes (empty when none were given).</summary>
    public IReadOnlyList<ulong> Codes { get; init; } = [];

    /// <summary>The guest's message (for Linux, the panic string); null when none was given. Invalid UTF-8 is replaced.</summary>
    public string? Message { get; init; }

    /// <summary>The tail of the guest's kernel log, oldest line first; null when none was given.</summary>
    public string? LogTail { get; init; }
}
