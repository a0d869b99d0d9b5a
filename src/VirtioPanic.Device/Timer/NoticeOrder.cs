namespace VirtioPanic.Device.Timer;

// The order in which notices fired (spec §6.12: pending notices are delivered in the order they
// fired), shared by the pretimeout notice of WatchdogTimer and the VCPU_STALL notices of
// VcpuStallMonitor. Interlocked only; a value is a ticket, never 0.
internal sealed class NoticeOrder
{
    private long _last;

    internal long Next() => Interlocked.Increment(ref _last);

    // After a restore: later tickets come after every restored one.
    internal void AtLeast(long value)
    {
        long current = Interlocked.Read(ref _last);
        while (value > current)
        {
            long seen = Interlocked.CompareExchange(ref _last, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}
