namespace VirtioPanic.Hosting;

// Rate limit for the per-event log lines a guest can trigger at will (a front end can make it
// write panic_events in a loop): at most Burst lines per Window, the rest counted. What was
// suppressed is summarised once the window is over, by the next line let through or by the
// manager's periodic sweep, so a flood that stops is still reported. One limiter per device and
// one per process (VirtioPanicManager.ShouldLog). A Lock rather than the device's lock-free
// scheme: the summary must not lose or double-count lines, and this is off the hot path's
// critical part (one uncontended lock per line, taken only when logging is attempted).
internal sealed class LogLimiter
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly int _burst;
    private readonly TimeSpan _window;
    private long _windowStart;
    private int _count;
    private long _suppressed;

    internal LogLimiter(TimeProvider time, int burst, TimeSpan window)
    {
        _time = time;
        _burst = burst;
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

    // True when the caller may log now; summary is what was suppressed in windows that are over
    // (the caller logs the summary line first), 0 when nothing was.
    internal bool TryAcquire(out long summary)
    {
        lock (_lock)
        {
            summary = RollUnsynchronized();
            if (_count < _burst)
            {
                _count++;
                return true;
            }

            _suppressed++;
            return false;
        }
    }

    // Lines suppressed elsewhere on this limiter's account (a device's summary the process limiter held back).
    internal void AddSuppressed(long count)
    {
        lock (_lock)
        {
            _suppressed += count;
        }
    }

    // What was suppressed, once the window it belongs to is over; 0 otherwise.
    internal long TakeSummary()
    {
        lock (_lock)
        {
            return RollUnsynchronized();
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
