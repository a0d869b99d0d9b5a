using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

/// <summary>A device event (or a deadline, or a management request) the policy service has handled: what it decided and what each VM-control call did.</summary>
public sealed record HandledEvent
{
    private string? _json;

    /// <summary>The device.</summary>
    public required string DeviceId { get; init; }

    /// <summary>The device event's sequence number; for a deadline, that of the event that armed it; 0 for a management request.</summary>
    public required long Sequence { get; init; }

    /// <summary>The event's QMP-style name (<c>GUEST_PANICKED</c>, <c>WATCHDOG</c>, <c>GUEST_CRASHLOADED</c>, <c>GUEST_PVSHUTDOWN</c>, <c>VIRTIO_WDT_*</c>), or for items without a device event <c>DEADLINE</c>, <c>ESCALATION_STEP</c> (a later step of a staged escalation; <see cref="Sequence"/> is its trigger's), <c>CONTINUE</c>, <c>GUEST_RESET</c>, <c>RECOVERY</c> (a decision of an earlier run carried out or reported after a restart); their <see cref="Json"/> is the event <c>VIRTIO_WDT_</c> + that name.</summary>
    public required string Name { get; init; }

    /// <summary>The device event; null for a deadline or a management request.</summary>
    public WatchdogEvent? Event { get; init; }

    /// <summary>The policy action decided, in libvirt spelling (<c>destroy</c>, <c>reset</c>, <c>log</c>, <c>grace</c>, <c>continue</c>, …).</summary>
    public required string PolicyAction { get; init; }

    /// <summary>The VM-control calls made, fallbacks included, in order.</summary>
    public IReadOnlyList<ActionOutcome> Steps { get; init; } = [];

    /// <summary>A remark worth reporting (storm guard tripped, grace window started or cancelled, …); null when none.</summary>
    public string? Note { get; init; }

    /// <summary>The event in QMP shape (see <see cref="QmpEvents"/>); formatted when first read.</summary>
    public string Json => _json ??= Event is not null ? QmpEvents.ToJson(Event, PolicyAction) : ManagementJson ?? string.Empty;

    // The JSON of a deadline or management request (which has no device event).
    internal string? ManagementJson { get; init; }

    /// <summary>When handling finished (host time).</summary>
    public required DateTimeOffset HandledAt { get; init; }

    /// <summary>Whether the journal recorded the event and its outcome (false only when the journal could not be written).</summary>
    public required bool Journaled { get; init; }

    /// <summary>Whether the last call made succeeded (true when no call was needed).</summary>
    public bool Succeeded => Steps.Count == 0 || Steps[^1].Succeeded;

    /// <summary>The outcome in one word: <c>ok</c>, <c>fallback</c> (a fallback ran and succeeded), <c>failed</c>, or <c>logged</c> (no call needed).</summary>
    public string Outcome => Steps.Count == 0 ? "logged" : !Succeeded ? "failed" : Steps.Any(s => !s.Succeeded) ? "fallback" : "ok";
}
