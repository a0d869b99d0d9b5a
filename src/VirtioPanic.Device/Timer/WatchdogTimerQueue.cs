using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace VirtioPanic.Device.Timer;

// Design: one expiry scheduler for all watchdog devices on a TimeProvider, instead of one runtime
// timer per device (rescheduled on every keepalive, its callbacks queued to a busy thread pool).
//
// Every entry (a WatchdogTimer) is queued at most once, keyed by a timestamp of the TimeProvider,
// in an indexed 4-ary min-heap: insert, move and remove are O(log n) and memory is one slot per
// device. The keys live in the heap array next to the entry references, so sifting compares
// within one contiguous array (10 000 devices: 160 KiB) instead of chasing every entry object;
// each moved entry's QueueIndex is written once.
//
// The queue does not know why an entry is due: when it comes due the entry re-checks its own
// state and schedules itself again if it fired early. That lets the keepalive path be lazy: a
// keepalive only moves the deadline later, so the watchdog timer leaves its earlier entry where it is and
// does not touch the queue at all (WatchdogTimer.RescheduleUnsynchronized); it only publishes the
// new due in the entry's DueHint. Before it fires or sleeps, the firing thread moves a top entry
// whose hint is later than its key to the hint, without calling the watchdog timer (a "fix-up"). So a
// device that is being pinged costs one O(log n) fix-up per timeout period on this thread, no
// callback and no wake-up of its own: the thread sleeps until the earliest entry that was really
// due when it looked. Fix-ups only ever move entries later, and an entry whose hint was lowered
// has been moved by Schedule, so nothing fires late.
//
// Driving. With TimeProvider.System, one dedicated background thread sleeps on an event until the
// earliest due, then fires what is due, in due order, on itself: no thread-pool hop and nothing to
// reschedule in the runtime's timer queue. With any other TimeProvider (FakeTimeProvider in tests),
// one ITimer of that provider is pointed at the earliest due and its callback runs the same code,
// so tests drive the queue deterministically.
//
// Threading. _lock guards the heap, every entry's QueueIndex/QueueDue, _wakeAt and _batch's use.
// Lock order: a watchdog timer's lock, then this one (watchdog timers schedule under their own lock). The queue never
// calls an entry while holding _lock: due entries are taken out under it and called after it is
// released, at most MaxBatch per lock hold, so a watchdog timer scheduling meanwhile waits for O(MaxBatch)
// heap operations at worst. Only one thread fires at a time (_wakeAt == Firing marks it). Fix-ups
// per pass are capped (twice the count, at least MinFixupsPerPass), so a guest pinging faster than the thread works cannot
// keep it busy: past the cap the thread sleeps until the top's key, which is never late.
//
// Lifetime: a queue lives as long as its TimeProvider (the system one for the process), so its
// thread, event and timer are never disposed.
#pragma warning disable CA1001 // owns an event/timer for the process's (or provider's) lifetime; see Lifetime above
internal sealed class WatchdogTimerQueue
#pragma warning restore CA1001
{
    private const int MaxBatch = 128;
    private const int MinFixupsPerPass = 1024;
    private const int Arity = 4;

    // _wakeAt while a thread is firing: whoever fires looks at the heap again before it sleeps, so
    // nobody needs waking.
    private const long Firing = long.MinValue;

    // An ITimer is never pointed closer than this: a TimeProvider may run a zero-due callback
    // synchronously inside Change, that is, inside _lock and the calling watchdog timer's lock.
    private static readonly TimeSpan s_minTimerDue = TimeSpan.FromTicks(1);
    private static readonly TimeSpan s_maxTimerDue = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private static readonly Lazy<WatchdogTimerQueue> s_system = new(() => new WatchdogTimerQueue(TimeProvider.System), LazyThreadSafetyMode.ExecutionAndPublication);

    // Non-system providers: one queue each, collected with its provider.
    private static readonly ConditionalWeakTable<TimeProvider, WatchdogTimerQueue> s_others = [];

    private readonly Lock _lock = new();
    private readonly TimeProvider _time;

    // Exactly one of the two drives the queue: the system thread's wake-up event, or the provider's timer.
    private readonly AutoResetEvent? _wake;
    private readonly ITimer? _timer;

    // Entries taken out for firing; used only by the firing thread (see Firing), outside _lock.
    private readonly WatchdogTimerEntry?[] _batch = new WatchdogTimerEntry?[MaxBatch];
    private Node[] _heap = new Node[16];
    private int _count;

    // The timestamp by which the driver will look at the heap again: what the system thread sleeps
    // until or the ITimer is pointed at (long.MaxValue: never), or Firing. Written under _lock by
    // Schedule (only ever lowered) and by the firing thread when it re-arms. Schedule wakes the
    // driver only for an entry due before it, so keepalives and later entries cost no wake-up.
    private long _wakeAt = long.MaxValue;

    private WatchdogTimerQueue(TimeProvider time)
    {
        _time = time;
        if (ReferenceEquals(time, TimeProvider.System))
        {
            _wake = new AutoResetEvent(initialState: false);
            var thread = new Thread(static state => ((WatchdogTimerQueue)state!).RunThread())
            {
                IsBackground = true,
                Name = "VirtioPanic watchdog timers",

                // Lateness is the metric: ahead of the pool threads where the OS honours priorities
                // (Linux does not for an unprivileged process; it is a hint there).
                Priority = ThreadPriority.Highest,
            };
            thread.UnsafeStart(this);
        }
        else
        {
            _timer = time.CreateTimer(static state => ((WatchdogTimerQueue)state!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    internal TimeProvider Time => _time;

    // How many entries are queued (tests, and the leak check of created-and-disposed devices).
    internal int Count
    {
        get
        {
            lock (_lock)
            {
                return _count;
            }
        }
    }

    // The shared queue of a TimeProvider.
    internal static WatchdogTimerQueue For(TimeProvider time) =>
        ReferenceEquals(time, TimeProvider.System) ? s_system.Value : s_others.GetValue(time, static t => new WatchdogTimerQueue(t));

    // A timestamp of this queue's provider `delay` from now, rounded up so an entry never fires
    // before its delay has elapsed.
    internal long TimestampAfter(TimeSpan delay) => _time.GetTimestamp() + ToTimestampTicks(delay);

    // Makes `entry` due at `due` (a timestamp of this queue's provider), moving it if it is queued.
    internal void Schedule(WatchdogTimerEntry entry, long due)
    {
        bool wake = false;
        lock (_lock)
        {
            AssertInvariants();
            int index = entry.QueueIndex;
            entry.QueueDue = due;
            if (index < 0)
            {
                if (_count == _heap.Length)
                {
                    Array.Resize(ref _heap, _heap.Length * 2);
                }

                SiftUpUnsynchronized(_count++, new Node(due, entry));
            }
            else if (due < _heap[index].Due)
            {
                SiftUpUnsynchronized(index, new Node(due, entry));
            }
            else
            {
                SiftDownUnsynchronized(index, new Node(due, entry));
            }

            if (due < _wakeAt)
            {
                _wakeAt = due;
                wake = true;
                _timer?.Change(TimerDue(due), Timeout.InfiniteTimeSpan);
            }
        }

        if (wake)
        {
            _wake?.Set();
        }
    }

    // Takes `entry` out of the queue if it is queued. A driver armed for it wakes, finds nothing due and re-arms.
    internal void Remove(WatchdogTimerEntry entry)
    {
        lock (_lock)
        {
            AssertInvariants();
            int index = entry.QueueIndex;
            if (index >= 0)
            {
                RemoveAtUnsynchronized(index);
            }
        }
    }

    private long ToTimestampTicks(TimeSpan delay)
    {
        if (delay <= TimeSpan.Zero)
        {
            return 0;
        }

        // Exact when the frequency is a whole multiple of TimeSpan ticks (Stopwatch on Linux: 1 GHz;
        // FakeTimeProvider: 10 MHz); delays are capped well below where the product could overflow.
        long frequency = _time.TimestampFrequency;
        return frequency % TimeSpan.TicksPerSecond == 0
            ? delay.Ticks * (frequency / TimeSpan.TicksPerSecond)
            : (long)Math.Ceiling(delay.Ticks * ((double)frequency / TimeSpan.TicksPerSecond));
    }

    private TimeSpan TimerDue(long due)
    {
        TimeSpan delay = _time.GetElapsedTime(_time.GetTimestamp(), due);
        return delay < s_minTimerDue ? s_minTimerDue : delay > s_maxTimerDue ? s_maxTimerDue : delay;
    }

    private void RunThread()
    {
        Debug.Assert(_wake is not null, "the thread drives the system queue only");
        while (true)
        {
            long next = FireDue();
            if (next == long.MaxValue)
            {
                _wake.WaitOne();
                continue;
            }

            // Wait in whole milliseconds, rounded up; an early wake-up only loops. A Schedule for an
            // earlier entry after FireDue released the lock has set the event, so WaitOne returns at once.
            double ms = Math.Ceiling(_time.GetElapsedTime(_time.GetTimestamp(), next).TotalMilliseconds);
            if (ms > 0)
            {
                _wake.WaitOne(ms >= int.MaxValue ? int.MaxValue - 1 : (int)ms);
            }
        }
    }

    // The ITimer's callback: FireDue re-arms the timer for the next entry under the lock.
    private void OnTimer() => _ = FireDue();

    // Fires every entry whose due has passed, in due order, then re-arms the driver for the earliest
    // remaining entry and returns its due (long.MaxValue when the queue is empty). Returns Firing
    // without doing anything when another thread is firing (it will see what is due).
    private long FireDue()
    {
        lock (_lock)
        {
            if (_wakeAt == Firing)
            {
                return Firing;
            }

            _wakeAt = Firing;
        }

        int fixups = 0;
        while (true)
        {
            int taken = 0;
            lock (_lock)
            {
                AssertInvariants();
                long now = _time.GetTimestamp();
                int maxFixups = Math.Max(MinFixupsPerPass, 2 * _count);
                int work = 0;
                while (taken < MaxBatch && work < MaxBatch && _count > 0)
                {
                    WatchdogTimerEntry top = _heap[0].Entry;
                    long hint = Volatile.Read(ref top.DueHint);
                    if (hint != long.MaxValue && hint > _heap[0].Due && fixups < maxFixups)
                    {
                        // Pinged since it was keyed: move it later, without calling it.
                        top.QueueDue = hint;
                        SiftDownUnsynchronized(0, new Node(hint, top));
                        fixups++;
                        work++;
                        continue;
                    }

                    if (_heap[0].Due > now)
                    {
                        break;
                    }

                    _batch[taken++] = top;
                    RemoveAtUnsynchronized(0);
                }

                if (taken == 0 && work < MaxBatch)
                {
                    long next = _count > 0 ? _heap[0].Due : long.MaxValue;
                    _wakeAt = next;
                    if (next != long.MaxValue)
                    {
                        _timer?.Change(TimerDue(next), Timeout.InfiniteTimeSpan);
                    }

                    return next;
                }
            }

            for (int i = 0; i < taken; i++)
            {
                WatchdogTimerEntry entry = _batch[i]!;
                _batch[i] = null;
                Fire(entry);
            }
        }
    }

    // One entry's callback. The queue is shared by every device on the provider and its firing
    // state (_wakeAt == Firing) must be released by this thread, so nothing an entry throws may
    // escape: an exception would end the system thread (and the process) or leave the queue marked
    // Firing for good, and no device would ever expire again. The entry hears about it instead.
    private static void Fire(WatchdogTimerEntry entry)
    {
#pragma warning disable CA1031 // any exception: see above; the entry reports it
        try
        {
            entry.OnDue();
        }
        catch (Exception ex)
        {
            try
            {
                entry.OnFault(ex);
            }
            catch (Exception)
            {
                // The entry's own fault handler failed too: nothing more to do on this thread.
            }
        }
#pragma warning restore CA1031
    }

    private void RemoveAtUnsynchronized(int index)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the heap is guarded by _lock");
        WatchdogTimerEntry removed = _heap[index].Entry;
        int last = --_count;
        Node moved = _heap[last];
        _heap[last] = default;
        if (index != last)
        {
            if (index > 0 && moved.Due < _heap[(index - 1) / Arity].Due)
            {
                SiftUpUnsynchronized(index, moved);
            }
            else
            {
                SiftDownUnsynchronized(index, moved);
            }
        }

        removed.QueueIndex = -1;

        // Give back the memory of a burst (many devices created and disposed), keeping some slack.
        if (_heap.Length > 64 && _count < _heap.Length / 4)
        {
            Array.Resize(ref _heap, _heap.Length / 2);
        }
    }

    // Places `node` at `index` or above: moves the hole up past every parent due later.
    private void SiftUpUnsynchronized(int index, Node node)
    {
        Node[] heap = _heap;
        while (index > 0)
        {
            int parent = (index - 1) / Arity;
            Node above = heap[parent];
            if (above.Due <= node.Due)
            {
                break;
            }

            heap[index] = above;
            above.Entry.QueueIndex = index;
            index = parent;
        }

        heap[index] = node;
        node.Entry.QueueIndex = index;
    }

    // Places `node` at `index` or below: moves the hole down to the earliest child while it is earlier.
    private void SiftDownUnsynchronized(int index, Node node)
    {
        Node[] heap = _heap;
        int count = _count;
        while (true)
        {
            int first = (Arity * index) + 1;
            if (first >= count)
            {
                break;
            }

            int best = first;
            int end = Math.Min(first + Arity, count);
            for (int child = first + 1; child < end; child++)
            {
                if (heap[child].Due < heap[best].Due)
                {
                    best = child;
                }
            }

            if (heap[best].Due >= node.Due)
            {
                break;
            }

            heap[index] = heap[best];
            heap[index].Entry.QueueIndex = index;
            index = best;
        }

        heap[index] = node;
        node.Entry.QueueIndex = index;
    }

    [Conditional("DEBUG")]
    private void AssertInvariants()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the heap is guarded by _lock");
        Debug.Assert(_count >= 0 && _count <= _heap.Length, "count within the heap");
        Debug.Assert(_count == 0 || _heap[0].Entry.QueueIndex == 0, "the root knows its slot");
    }

    // One heap slot: the key inline, so sifting does not touch the entry objects.
    private readonly record struct Node(long Due, WatchdogTimerEntry Entry);
}
