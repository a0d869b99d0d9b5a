namespace VirtioPanic.RateLimiting;

// One rate limit for every log line that someone outside the host can trigger at will: a guest
// (bad register accesses, bad records, a panic_events loop), a vhost-user front end (repeated or
// malformed messages, connect loops), a VMM's monitor. At most Burst lines per Window; the rest are
// counted, and once the window they fell in is over, the next line let through reports how many
// were suppressed (the caller logs that summary first). TakeSuppressed hands the count to a closing
// or periodic summary instead, so a flood that stops is still reported.
//
// This file is compiled into each project that logs such lines (<Compile Include="../Common/…"
// Link="…"/>, the way dotnet/runtime shares internal sources): the type stays internal to each
// assembly, so no project needs another's internals.
//
// A Lock rather than a lock-free scheme: a summary must neither lose nor double-count lines, and
// this runs only when a line is about to be logged, never on the ring hot path.
internal sealed class LogRateLimiter
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly int _burst;
    private readonly TimeSpan _window;
    private long _windowStart;
    private int _count;
    private long _suppressed;

    internal LogRateLimiter(TimeProvider time, int burst, TimeSpan window)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(window, TimeSpan.Zero);
        _time = time;
        _burst = Math.Max(0, burst);
        _window = window;
        _windowStart = time.GetTimestamp();
    }

    internal bool HasSuppressed
    {
        get
        {
            lock (_lock)
            {
                return _suppressed > 0;
            }
        }
    }

    // True when the caller may log now. suppressed: lines swallowed in windows that are over, for
    // the caller to report first (0 when none). carried: lines another limiter swallowed on this
    // one's account (a per-connection count passed up to a per-process limiter that then refuses
    // too), counted here so that the next summary covers them.
    internal bool TryAcquire(out long suppressed, long carried = 0)
    {
        lock (_lock)
        {
            suppressed = RollUnsynchronized();
            if (_count < _burst)
            {
                _count++;
                suppressed += carried;
                return true;
            }

            _suppressed += 1 + carried;
            return false;
        }
    }

    // Lines suppressed elsewhere on this limiter's account.
    internal void AddSuppressed(long count)
    {
        lock (_lock)
        {
            _suppressed += count;
        }
    }

    // What was suppressed, once the window it belongs to is over; 0 otherwise (a periodic sweep).
    internal long TakeSummary()
    {
        lock (_lock)
        {
            return RollUnsynchronized();
        }
    }

    // Everything suppressed so far, whatever the window (a closing summary).
    internal long TakeSuppressed()
    {
        lock (_lock)
        {
            long suppressed = _suppressed;
            _suppressed = 0;
            return suppressed;
        }
    }

    private long RollUnsynchronized()
    {
        long now = _time.GetTimestamp();
        if (_time.GetElapsedTime(_windowStart, now) < _window)
        {
            return 0;
        }

        _windowStart = now;
        _count = 0;
        long suppressed = _suppressed;
        _suppressed = 0;
        return suppressed;
    }
}
