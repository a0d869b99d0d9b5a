using System.Diagnostics.CodeAnalysis;
using System.Threading.Channels;

namespace VirtioPanic.Device.Events;

// Design: the device's event channel, bounded in memory without ever losing a critical event.
//
// Events go to an unbounded channel, but the sink counts what the host has not read yet
// (_pending; the reader decrements it) and admits by kind:
//   - non-critical events (armed, stopped, pretimeout, protocol error, driver reset) while fewer
//     than half the capacity are pending; otherwise they are dropped and counted (their sequence
//     numbers are then missing, so the host sees the gap);
//   - critical events (panicked, crash-loaded, shutdown, expired, and the three vCPU-stall events)
//     while fewer than the capacity are
//     pending; otherwise the newest one of each kind is parked in an overflow slot and later ones
//     of that kind are folded into it (CoalescedCount). As the host reads, parked events are
//     released. So at most Capacity + 7 events exist at once, and the fact that a panic or expiry
//     happened, its count and its latest payload always reach the host.
// One Lock guards the counters and slots; it is never held while touching guest memory and the
// channel writes under it never block (unbounded channel).
internal sealed class WatchdogEventSink
{
    private const int CriticalKinds = 7;

    private readonly Lock _lock = new();
    private readonly Channel<WatchdogEvent> _channel;
    private readonly int _capacity;
    private readonly int _nonCriticalCapacity;
    private readonly WatchdogEvent?[] _parked = new WatchdogEvent?[CriticalKinds];
    private readonly int[] _parkedFolded = new int[CriticalKinds];
    private long _sequence;
    private int _pending;
    private long _dropped;
    private long _coalesced;
    private WatchdogEvent? _last;

    internal WatchdogEventSink(int capacity)
    {
        _capacity = capacity;
        _nonCriticalCapacity = capacity / 2;
        _channel = Channel.CreateUnbounded<WatchdogEvent>(new UnboundedChannelOptions
        {
            SingleReader = false,
            SingleWriter = false,
            AllowSynchronousContinuations = false,
        });
        Reader = new WatchdogEventReader(_channel.Reader, this);
    }

    internal ChannelReader<WatchdogEvent> Reader { get; }

    internal WatchdogEvent? LastEvent => Volatile.Read(ref _last);

    internal long Dropped => Interlocked.Read(ref _dropped);

    internal long Coalesced => Interlocked.Read(ref _coalesced);

    internal int Pending => Volatile.Read(ref _pending);

    internal long NextSequence() => Interlocked.Increment(ref _sequence);

    internal long CurrentSequence => Interlocked.Read(ref _sequence);

    internal void RestoreSequence(long sequence)
    {
        long current = Interlocked.Read(ref _sequence);
        while (sequence > current)
        {
            long seen = Interlocked.CompareExchange(ref _sequence, sequence, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }

    // Returns what happened to the event, for logging by the caller.
    internal Admission Publish(WatchdogEvent evt)
    {
        lock (_lock)
        {
            _last = evt;
            if (evt.IsCritical)
            {
                int slot = Slot(evt.Kind);
                if (_pending < _capacity && _parked[slot] is null)
                {
                    WriteUnsynchronized(evt);
                    return Admission.Delivered;
                }

                // Park the newest, fold the one it replaces.
                if (_parked[slot] is not null)
                {
                    _parkedFolded[slot] += 1 + _parked[slot]!.CoalescedCount;
                }

                _parked[slot] = evt;
                _coalesced++;
                return Admission.Coalesced;
            }

            if (_pending < _nonCriticalCapacity)
            {
                WriteUnsynchronized(evt);
                return Admission.Delivered;
            }

            _dropped++;
            return Admission.Dropped;
        }
    }

    // The minimal panic path's single-consumer decision, under the admission lock: the observer is
    // asked only when nothing unread or parked is ahead of the report (a taken report would overtake
    // it), and a report it takes is not queued but counts as the last event. The observer must not
    // block (it runs under this lock and the transport's register lock).
    internal bool TryTakeInline(GuestReportEvent report, Func<GuestReportEvent, Action?> observer, [NotNullWhen(true)] out Action? handler)
    {
        lock (_lock)
        {
            handler = _pending == 0 && Array.TrueForAll(_parked, p => p is null) ? observer(report) : null;
            if (handler is null)
            {
                return false;
            }

            _last = report;
            return true;
        }
    }

    internal void Complete() => _channel.Writer.TryComplete();

    // Called by the reader for every event the host took.
    internal void OnRead()
    {
        lock (_lock)
        {
            _pending--;
            for (int slot = 0; slot < CriticalKinds && _pending < _capacity; slot++)
            {
                WatchdogEvent? parked = _parked[slot];
                if (parked is null)
                {
                    continue;
                }

                _parked[slot] = null;
                int folded = _parkedFolded[slot];
                _parkedFolded[slot] = 0;
                WriteUnsynchronized(folded == 0 ? parked : parked with { CoalescedCount = parked.CoalescedCount + folded });
            }
        }
    }

    private static int Slot(WatchdogEventKind kind) => kind switch
    {
        WatchdogEventKind.GuestPanicked => 0,
        WatchdogEventKind.GuestCrashLoaded => 1,
        WatchdogEventKind.GuestShutdown => 2,
        WatchdogEventKind.VcpuStalled => 4,
        WatchdogEventKind.VcpuRecovered => 5,
        WatchdogEventKind.VcpuStallExpired => 6,
        _ => 3,
    };

    private void WriteUnsynchronized(WatchdogEvent evt)
    {
        if (_channel.Writer.TryWrite(evt))
        {
            _pending++;
        }
    }

    internal enum Admission
    {
        Delivered,
        Coalesced,
        Dropped,
    }
}
