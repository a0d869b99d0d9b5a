using Microsoft.Extensions.Logging;

namespace VirtioPanic.VhostUser.Tests;

/// <summary>Collects log lines (for assertions) and echoes them to the test output.</summary>
internal sealed class TestLogger : ILogger
{
    private readonly List<(LogLevel Level, EventId Id, string Message)> _entries = [];

    internal IReadOnlyList<(LogLevel Level, EventId Id, string Message)> Entries
    {
        get
        {
            lock (_entries)
            {
                return [.. _entries];
            }
        }
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        string message = formatter(state, exception);
        lock (_entries)
        {
            _entries.Add((logLevel, eventId, message));
        }

        if (exception is not null)
        {
            TestContext.Progress.WriteLine($"[{logLevel}] {eventId.Id} {message} {exception}");
        }
    }

    public override string ToString()
    {
        lock (_entries)
        {
            return string.Join('\n', _entries.Select(e => $"[{e.Level}] {e.Id.Id} {e.Message}"));
        }
    }
}
