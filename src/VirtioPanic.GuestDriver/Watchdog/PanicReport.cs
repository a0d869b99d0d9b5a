using VirtioPanic.Device;

namespace VirtioPanic.GuestDriver.Watchdog;

/// <summary>What a panic notifier knows about the panic (the fields of an event record, spec §6.5.1).</summary>
public sealed class PanicReport
{
    /// <summary>The panic string; truncated to 1024 UTF-8 bytes.</summary>
    public string Message { get; init; } = string.Empty;

    /// <summary>Up to five 64-bit codes (a bugcheck code and its parameters, or Hyper-V's crash registers).</summary>
    public IReadOnlyList<ulong> Codes { get; init; } = [];

    /// <summary>How to read <see cref="Codes"/>.</summary>
    public PanicCodeFormat CodeFormat { get; init; } = PanicCodeFormat.Generic;

    /// <summary>The kernel log tail (<c>kmsg_dump</c>), oldest line first; sent only with VIRTIO_WDT_F_LOG_TAIL, truncated to its last 16384 UTF-8 bytes.</summary>
    public string? LogTail { get; init; }

    /// <summary>The reporting vCPU, or null when unknown.</summary>
    public uint? VcpuId { get; init; }

    /// <summary>The guest clock at the event, or null when unknown.</summary>
    public TimeSpan? GuestTime { get; init; }
}
