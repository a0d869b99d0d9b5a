namespace VirtioPanic.Transport;

// Design: a fixed-window budget of log messages per second, lock-free.
//
// A guest can trigger invalid accesses at the speed of VM exits; logging each one would let it
// flood the host log (style.md §5.16, Firecracker's InvalidAvailIdx rationale). Callers count
// every access regardless and ask here whether to log it. The first caller to see an expired
// window starts the next one (compare-exchange on its start) and collects how many messages the
// old window suppressed, so the log says what it skipped. Races at a window boundary can let a
// handful of extra messages through; that is harmless.
internal sealed class LogRateLimiter
{
    private readonly TimeProvider _time;
    private readonly int _budget;
    private readonly long _windowTicks;
    private long _windowStart;
    private int _used;
    private long _suppressed;

    internal LogRateLimiter(TimeProvider time, int budgetPerSecond)
    {
        _time = time;
        _budget = Math.Max(0, budgetPerSecond);
        _windowTicks = time.TimestampFrequency;
        _windowStart = time.GetTimestamp();
    }

    // True when this message may be logged; suppressed = messages dropped in the previous window(s)
    // that the caller should report first.
    internal bool TryAcquire(out long suppressed)
    {
        suppressed = 0;
        long now = _time.GetTimestamp();
        long start = Volatile.Read(ref _windowStart);
        if (now - start >= _windowTicks && Interlocked.CompareExchange(ref _windowStart, now, start) == start)
        {
            Interlocked.Exchange(ref _used, 0);
            suppressed = Interlocked.Exchange(ref _suppressed, 0);
        }

        if (Interlocked.Increment(ref _used) <= _budget)
        {
            return true;
        }

        Interlocked.Increment(ref _suppressed);
        return false;
    }
}
