namespace VirtioPanic.Hosting;

/// <summary>The management query's answer: every attached device and the policies in force.</summary>
public sealed record VirtioPanicStatus
{
    /// <summary>When the snapshot was taken (host time).</summary>
    public required DateTimeOffset Time { get; init; }

    /// <summary>Whether the policy service is running (devices attached before it starts wait for it).</summary>
    public required bool Running { get; init; }

    /// <summary>The journal file.</summary>
    public required string JournalPath { get; init; }

    /// <summary>
    /// Null while the journal works; otherwise why it does not (it could not be opened, or its last
    /// write failed, for example on a full disk). The service then runs degraded: it keeps handling
    /// and acting on events, which are not journaled until writes succeed again.
    /// </summary>
    public string? JournalError { get; init; }

    /// <summary>The default policy (for devices without their own).</summary>
    public required DevicePolicy DefaultPolicy { get; init; }

    /// <summary>The attached devices, ordered by id.</summary>
    public required IReadOnlyList<DeviceReport> Devices { get; init; }
}
