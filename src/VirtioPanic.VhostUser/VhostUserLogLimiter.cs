using VirtioPanic.RateLimiting;

namespace VirtioPanic.VhostUser;

// Rate limit for log lines a front end can trigger at will (every line of VhostUserLog except
// Listening/Stopped and the Trace-level per-message line): one LogRateLimiter (src/Common) per
// kind of line (its event id), so a flood of one kind does not silence the others.
//
// Two of these guard every line: the session's own (a hostile connection floods with messages)
// and the back end's (a front end that connects and closes in a loop gets a fresh session each
// time). A line is written only when both allow it.
//
// Threading: the event loop thread and device threads (needs-reset, config change) log through the
// same limiter; the back end's limiter is also used by the listener. A slot is created at its
// kind's first line and published with CompareExchange (Volatile.Read sees it whole); each
// LogRateLimiter guards itself.
internal sealed class VhostUserLogLimiter
{
    // Event ids of VhostUserLog are small and stable (see there); one slot per id.
    private const int Slots = 32;

    // Created at a kind's first line (most kinds never occur on a connection): an idle session or
    // back end holds 32 null references, not 32 limiters.
    private readonly LogRateLimiter?[] _slots = new LogRateLimiter?[Slots];
    private readonly TimeProvider _time;
    private readonly int _burst;
    private readonly TimeSpan _window;

    internal VhostUserLogLimiter(TimeProvider time, int burst, TimeSpan window)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(window, TimeSpan.Zero);
        _time = time;
        _burst = burst;
        _window = window;
    }

    // True when a line of this kind may be written now; suppressed is how many lines of the kind
    // were swallowed in windows that are over (report them with it). carried: lines another
    // limiter already swallowed on this one's account (see LogRateLimiter.TryAcquire).
    internal bool TryAcquire(int eventId, out long suppressed, long carried = 0) =>
        Slot(eventId).TryAcquire(out suppressed, carried);

    // Takes the suppressed counts still unreported (event id, count), for a closing summary.
    internal List<(int EventId, long Count)> Drain()
    {
        var pending = new List<(int, long)>();
        for (int i = 0; i < Slots; i++)
        {
            long count = Volatile.Read(ref _slots[i])?.TakeSuppressed() ?? 0;
            if (count > 0)
            {
                pending.Add((i, count));
            }
        }

        return pending;
    }

    private LogRateLimiter Slot(int eventId)
    {
        int index = (uint)eventId < Slots ? eventId : 0;
        LogRateLimiter? slot = Volatile.Read(ref _slots[index]);
        if (slot is null)
        {
            // Two threads may race to create it (loop thread, device threads): one wins, both use it.
            slot = new LogRateLimiter(_time, _burst, _window);
            slot = Interlocked.CompareExchange(ref _slots[index], slot, null) ?? slot;
        }

        return slot;
    }
}

// The logger the back end and its sessions write front-end-triggered lines through: every line at
// Debug level or above passes the limiters first (both must allow it); a line allowed after
// suppressed ones is preceded by a VhostUserLog.Suppressed summary. Trace (one line per message
// received, for protocol debugging) is not limited: it is enabled deliberately and never by
// default. Lines that only the host causes (Listening, Stopped) bypass it through the inner logger.
internal sealed class VhostUserLimitedLogger : Microsoft.Extensions.Logging.ILogger
{
    private readonly Microsoft.Extensions.Logging.ILogger _inner;
    private readonly VhostUserLogLimiter _own;
    private readonly VhostUserLogLimiter? _shared;

    internal VhostUserLimitedLogger(Microsoft.Extensions.Logging.ILogger inner, VhostUserLogLimiter own, VhostUserLogLimiter? shared)
    {
        _inner = inner;
        _own = own;
        _shared = shared;
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => _inner.BeginScope(state);

    public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => _inner.IsEnabled(logLevel);

    public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (logLevel == Microsoft.Extensions.Logging.LogLevel.Trace)
        {
            _inner.Log(logLevel, eventId, state, exception, formatter);
            return;
        }

        if (!_own.TryAcquire(eventId.Id, out long suppressed))
        {
            return;
        }

        long sharedSuppressed = 0;
        if (_shared is not null && !_shared.TryAcquire(eventId.Id, out sharedSuppressed, carried: suppressed))
        {
            // Counted by the shared limiter, with the session's own count, so that the next
            // summary still covers both.
            return;
        }

        if (suppressed + sharedSuppressed > 0)
        {
            VhostUserLog.Suppressed(_inner, suppressed + sharedSuppressed, VhostUserLog.KindOf(eventId.Id));
        }

        _inner.Log(logLevel, eventId, state, exception, formatter);
    }

    // End of a connection: report what the session's limiter swallowed and never reported. The
    // summaries pass the shared limiter, so a connect-flood-close loop cannot flood with them.
    internal void Flush()
    {
        foreach ((int id, long count) in _own.Drain())
        {
            if (_shared is null || _shared.TryAcquire(VhostUserLog.SuppressedId, out _))
            {
                VhostUserLog.Suppressed(_inner, count, VhostUserLog.KindOf(id));
            }
        }
    }
}
