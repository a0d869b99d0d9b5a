namespace VirtioPanic.Device;

// Rate limit for warnings a guest can trigger at will: at most Burst per Window, then silence
// until the window rolls over; the first warning after that reports how many were suppressed.
// Lock-free: a lost race only lets one extra warning through or suppresses one more.
internal sealed class GuestWarningLimiter
{
    private const int Burst = 10;
    private static readonly TimeSpan s_window = TimeSpan.FromMinutes(1);

    private readonly TimeProvider _time;
    private long _windowStart;
    private int _count;
    private long _suppressed;

    internal GuestWarningLimiter(TimeProvider time)
    {
        _time = time;
        _windowStart = time.GetTimestamp();
    }

    // True when the caller may log now; suppressed is the number of warnings swallowed since the last one logged.
    internal bool TryAcquire(out long suppressed)
    {
        long now = _time.GetTimestamp();
        long start = Volatile.Read(ref _windowStart);
        if (_time.GetElapsedTime(start, now) >= s_window && Interlocked.CompareExchange(ref _windowStart, now, start) == start)
        {
            Volatile.Write(ref _count, 0);
        }

        if (Interlocked.Increment(ref _count) <= Burst)
        {
            suppressed = Interlocked.Exchange(ref _suppressed, 0);
            return true;
        }

        Interlocked.Increment(ref _suppressed);
        suppressed = 0;
        return false;
    }
}
