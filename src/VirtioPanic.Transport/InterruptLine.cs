using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Transport;

// Design: drives a level-triggered line (the PCI INTx pin, the virtio-mmio IRQ) from many threads
// without a lock, so that the line always ends at the level the state asks for.
//
// Device workers set ISR/InterruptStatus bits, vCPUs clear them; each then calls Update(). If two
// threads each computed a level and called the sink, their calls could arrive out of order and
// leave the line wrong (asserted with nothing pending, or the reverse: a lost interrupt). Instead
// updates are combined: one thread at a time is the deliverer (_delivering 0 -> 1); it recomputes
// the level from the shared state and calls the sink only when the level changed. Any thread that
// finds a deliverer already at work just bumps _requests and leaves; the deliverer re-checks
// _requests after letting go and delivers again if someone asked meanwhile. The sink therefore
// sees a serialized sequence of level changes that ends at the current level, and no lock is held
// while it runs.
internal sealed class InterruptLine
{
    private readonly IInterruptSink _sink;
    private readonly IInterruptLevelSource _source;
    private int _requests;
    private int _delivering;
    private bool _level;   // last level passed to the sink; only the deliverer touches it

    internal InterruptLine(IInterruptSink sink, IInterruptLevelSource source)
    {
        _sink = sink;
        _source = source;
    }

    internal bool Level => Volatile.Read(ref _level);

    internal void Update()
    {
        // Full fence: the caller's state change is visible before our request is.
        Interlocked.Increment(ref _requests);
        while (Interlocked.CompareExchange(ref _delivering, 1, 0) == 0)
        {
            int seen = Volatile.Read(ref _requests);
            bool level = _source.ComputeInterruptLevel();
            if (level != _level)
            {
                Volatile.Write(ref _level, level);
                _sink.SetIntxLevel(level);
            }

            // Full fence (Exchange) between releasing the deliverer role and re-reading the request
            // count: a thread that failed its compare-exchange before this point has already
            // incremented _requests, so we see it and go round again.
            Interlocked.Exchange(ref _delivering, 0);
            if (Volatile.Read(ref _requests) == seen)
            {
                return;
            }
        }
    }
}
