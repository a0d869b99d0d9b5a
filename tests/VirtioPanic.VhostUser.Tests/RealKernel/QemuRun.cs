using System.Text.RegularExpressions;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>The outcome of one guest run.</summary>
internal sealed partial class QemuRun
{
    internal QemuRun(int exitCode, bool timedOut, string serialLog, string qemuOutput, IReadOnlyList<string> qmpEvents, TimeSpan duration, string serialLogPath)
    {
        ExitCode = exitCode;
        TimedOut = timedOut;
        SerialLog = serialLog;
        QemuOutput = qemuOutput;
        QmpEvents = qmpEvents;
        Duration = duration;
        SerialLogPath = serialLogPath;
    }

    internal int ExitCode { get; }

    internal bool TimedOut { get; }

    /// <summary>Everything the guest printed on its serial console (ttyS0).</summary>
    internal string SerialLog { get; }

    /// <summary>QEMU's own stdout and stderr.</summary>
    internal string QemuOutput { get; }

    /// <summary>QMP events as raw JSON lines, in arrival order (empty unless requested).</summary>
    internal IReadOnlyList<string> QmpEvents { get; }

    internal TimeSpan Duration { get; }

    internal string SerialLogPath { get; }

    /// <summary>Whether the action ran to its end marker.</summary>
    internal bool ActionCompleted => SerialLog.Contains("VP-ACTION-END", StringComparison.Ordinal);

    /// <summary>The text between two markers on the serial console, or null.</summary>
    internal string? Between(string begin, string end)
    {
        int start = SerialLog.IndexOf(begin, StringComparison.Ordinal);
        if (start < 0)
        {
            return null;
        }

        start += begin.Length;
        int stop = SerialLog.IndexOf(end, start, StringComparison.Ordinal);
        return stop < 0 ? null : SerialLog[start..stop];
    }

    /// <summary>A summary for assertion messages: exit status, timing and the serial log's tail.</summary>
    public override string ToString()
    {
        string tail = SerialLog.Length > 3000 ? SerialLog[^3000..] : SerialLog;
        return $"QEMU exit {ExitCode}{(TimedOut ? " (timed out, killed)" : string.Empty)} after {Duration.TotalSeconds:F1} s\n"
            + $"--- QEMU output ---\n{QemuOutput}\n--- serial (tail) ---\n{tail}";
    }

    /// <summary>Hex digits between two markers, whitespace removed.</summary>
    internal byte[]? HexBetween(string begin, string end)
    {
        string? text = Between(begin, end);
        if (text is null)
        {
            return null;
        }

        string hex = NotHex().Replace(text, string.Empty);
        return hex.Length % 2 == 0 ? Convert.FromHexString(hex) : null;
    }

    [GeneratedRegex("[^0-9a-fA-F]")]
    private static partial Regex NotHex();
}
