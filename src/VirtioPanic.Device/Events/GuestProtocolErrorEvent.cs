namespace VirtioPanic.Device;

/// <summary>The guest broke the device protocol. Counted; the device stops only where the spec says so (ring errors and rejected baseline heartbeats).</summary>
public sealed record GuestProtocolErrorEvent : WatchdogEvent
{
    /// <summary>What went wrong.</summary>
    public required WatchdogProtocolError Error { get; init; }

    /// <summary>The queue involved, or -1 for the configuration space.</summary>
    public required int QueueIndex { get; init; }

    /// <summary>A short, stable description (for example the queue status or the record rule broken).</summary>
    public required string Detail { get; init; }

    /// <summary>For records, the type the guest declared (1 panic, 2 crash-loaded, 3 shutdown, other = unknown); null otherwise.</summary>
    public ushort? DeclaredRecordType { get; init; }

    /// <inheritdoc />
    public override WatchdogEventKind Kind => WatchdogEventKind.ProtocolError;
}
