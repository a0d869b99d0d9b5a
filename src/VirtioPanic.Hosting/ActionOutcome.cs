namespace VirtioPanic.Hosting;

/// <summary>One VM-control call the policy service made and how it went.</summary>
public sealed record ActionOutcome
{
    /// <summary>The call.</summary>
    public required VmOperation Operation { get; init; }

    /// <summary>Whether it succeeded.</summary>
    public required bool Succeeded { get; init; }

    /// <summary>Why it failed (the VM control's reason, an exception message, or a timeout); null on success.</summary>
    public string? Error { get; init; }

    /// <summary>When this call is a fallback: the operation whose failure led to it.</summary>
    public VmOperation? FallbackFor { get; init; }

    /// <summary>How long the call took.</summary>
    public required TimeSpan Duration { get; init; }

    /// <summary>For a dump: the file requested.</summary>
    public string? Path { get; init; }
}
