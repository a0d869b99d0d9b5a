namespace VirtioPanic.Hosting.Qmp;

/// <summary>Where a <see cref="QmpVmControl"/> finds the VMM's QMP monitor, and how long its commands may take.</summary>
public sealed class QmpVmControlOptions
{
    /// <summary>The monitor's Unix socket (QEMU: <c>-qmp unix:PATH,server=on,wait=off</c>). Required.</summary>
    public required string SocketPath { get; init; }

    /// <summary>How long a command (and the connection handshake) may take before it counts as failed. Defaults to 5 seconds.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long <c>dump-guest-memory</c> may take (the VMM writes all of guest memory). Defaults to 5 minutes.</summary>
    public TimeSpan DumpTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>The pause between connection attempts while the monitor is unreachable. Defaults to 1 second.</summary>
    public TimeSpan ReconnectDelay { get; init; } = TimeSpan.FromSeconds(1);
}
