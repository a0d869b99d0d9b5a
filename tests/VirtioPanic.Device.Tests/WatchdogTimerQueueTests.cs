using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Device.Timer;

namespace VirtioPanic.Device.Tests;

// The shared expiry scheduler: driven by one ITimer of a FakeTimeProvider here (the same code the
// system clock's thread runs), so every assertion is exact and nothing sleeps.
public sealed class WatchdogTimerQueueTests
{
    private static readonly TimeSpan s_tick = TimeSpan.FromTicks(1);

    [Test]
    public void Schedule_ManyEntries_EachFiresOnceExactlyAtItsDue_InDueOrder()
    {
        var time = NewTime();
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(time);
        var random = new Random(1234);
        var fired = new List<(int Id, long At)>();
        var entries = new RecordingEntry[2000];
        for (int i = 0; i < entries.Length; i++)
        {
            entries[i] = new RecordingEntry(i, time, fired);
            queue.Schedule(entries[i], queue.TimestampAfter(TimeSpan.FromMilliseconds(random.Next(1, 5000))));
        }

        Assert.That(queue.Count, Is.EqualTo(entries.Length));
        for (int ms = 0; ms < 5000; ms++)
        {
            time.Advance(TimeSpan.FromMilliseconds(1));
        }

        Assert.Multiple(() =>
        {
            Assert.That(queue.Count, Is.Zero);
            Assert.That(fired.Select(f => f.Id), Is.EquivalentTo(Enumerable.Range(0, entries.Length)), "each fired exactly once");
            Assert.That(fired.All(f => f.At == entries[f.Id].ScheduledDue), Is.True, "each fired at its due, not a step later");
            Assert.That(fired.Select(f => f.At), Is.Ordered, "in due order");
        });
    }

    [Test]
    public void Schedule_QueuedEntry_MovesInPlace_AndFiresOnceAtTheLastDue()
    {
        var time = NewTime();
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(time);
        var fired = new List<(int Id, long At)>();
        var entry = new RecordingEntry(0, time, fired);
        var other = new RecordingEntry(1, time, fired);
        queue.Schedule(other, queue.TimestampAfter(TimeSpan.FromSeconds(5)));
        queue.Schedule(entry, queue.TimestampAfter(TimeSpan.FromSeconds(10)));
        queue.Schedule(entry, queue.TimestampAfter(TimeSpan.FromSeconds(2)));
        queue.Schedule(entry, queue.TimestampAfter(TimeSpan.FromSeconds(7)));
        Assert.That(queue.Count, Is.EqualTo(2), "an entry is queued at most once");

        time.Advance(TimeSpan.FromSeconds(7) - s_tick);
        Assert.That(fired.Select(f => f.Id), Is.EqualTo(new[] { 1 }));
        time.Advance(s_tick);
        Assert.That(fired.Select(f => f.Id), Is.EqualTo(new[] { 1, 0 }));
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.That(fired, Has.Count.EqualTo(2));
    }

    [Test]
    public void Remove_QueuedEntries_NeverFire_AndLeaveTheOthersInOrder()
    {
        var time = NewTime();
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(time);
        var fired = new List<(int Id, long At)>();
        var entries = Enumerable.Range(0, 100).Select(i => new RecordingEntry(i, time, fired)).ToArray();
        foreach (RecordingEntry entry in entries)
        {
            queue.Schedule(entry, queue.TimestampAfter(TimeSpan.FromMilliseconds(100 - entry.Id)));
        }

        foreach (RecordingEntry entry in entries.Where(e => e.Id % 3 == 0))
        {
            queue.Remove(entry);
        }

        queue.Remove(entries[0]);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Multiple(() =>
        {
            Assert.That(fired.Select(f => f.Id), Is.EqualTo(entries.Where(e => e.Id % 3 != 0).Select(e => e.Id).Reverse()));
            Assert.That(queue.Count, Is.Zero);
        });
    }

    [Test]
    public void OnDue_EntrySchedulingItselfAgain_FiresAgainLater_NotInTheSamePass()
    {
        var time = NewTime();
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(time);
        int fires = 0;
        var entry = new CallbackEntry();
        entry.Due = () =>
        {
            fires++;
            queue.Schedule(entry, queue.TimestampAfter(TimeSpan.FromSeconds(1)));
        };
        queue.Schedule(entry, queue.TimestampAfter(TimeSpan.FromSeconds(1)));

        time.Advance(TimeSpan.FromSeconds(1));
        Assert.That(fires, Is.EqualTo(1));
        time.Advance(TimeSpan.FromSeconds(3));
        Assert.That(fires, Is.EqualTo(2), "one pass per advance: re-queued one second after the (late) pass");
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.That(fires, Is.EqualTo(3));
    }

    [Test]
    public void FireDue_EntryWithALaterHint_IsMovedToTheHintWithoutBeingCalled()
    {
        var time = NewTime();
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(time);
        int fires = 0;
        var entry = new CallbackEntry { Due = () => fires++ };
        long first = queue.TimestampAfter(TimeSpan.FromSeconds(1));
        entry.DueHint = first;
        queue.Schedule(entry, first);
        entry.DueHint = queue.TimestampAfter(TimeSpan.FromSeconds(5));

        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Multiple(() =>
        {
            Assert.That(fires, Is.Zero, "a stale key is a fix-up, not a callback");
            Assert.That(entry.QueueDue, Is.EqualTo(entry.DueHint));
            Assert.That(queue.Count, Is.EqualTo(1));
        });

        time.Advance(TimeSpan.FromSeconds(4) - s_tick);
        Assert.That(fires, Is.Zero);
        time.Advance(s_tick);
        Assert.That(fires, Is.EqualTo(1));
    }

    [Test]
    public void Keepalive_LeavesTheQueuedEntryInPlace_EarlyFireRequeuesAtTheTrueDeadline()
    {
        var time = NewTime();
        var listener = new RecordingListener();
        using var core = new WatchdogTimer(time, new WatchdogDeviceOptions { DefaultTimeout = TimeSpan.FromSeconds(20) }, listener);
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(time);
        core.Heartbeat();
        long firstDue = QueuedDue(queue, core);
        Assert.That(firstDue, Is.EqualTo(time.GetTimestamp() + TimeSpan.FromSeconds(20).Ticks));

        for (int s = 0; s < 15; s++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            core.Heartbeat();
            Assert.That(QueuedDue(queue, core), Is.EqualTo(firstDue), "a keepalive does not touch the queue");
        }

        long lastKeepalive = time.GetTimestamp();
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Multiple(() =>
        {
            Assert.That(listener.Kinds, Does.Not.Contain(WatchdogTransitionKind.Expired), "the early entry only re-checked");
            Assert.That(QueuedDue(queue, core), Is.EqualTo(lastKeepalive + TimeSpan.FromSeconds(20).Ticks), "re-queued at the last keepalive + timeout");
        });

        time.Advance(TimeSpan.FromSeconds(15) - s_tick);
        Assert.That(listener.Kinds, Does.Not.Contain(WatchdogTransitionKind.Expired));
        time.Advance(s_tick);
        Assert.Multiple(() =>
        {
            Assert.That(listener.Kinds.Count(k => k == WatchdogTransitionKind.Expired), Is.EqualTo(1));
            Assert.That(queue.Count, Is.Zero, "an expired watchdog holds no entry");
        });
    }

    [Test]
    public void ShorterTimeout_MovesTheQueuedEntryEarlier()
    {
        var time = NewTime();
        var listener = new RecordingListener();
        using var core = new WatchdogTimer(time, new WatchdogDeviceOptions(), listener);
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(time);
        core.Control(WatchdogCommand.Start, TimeSpan.FromMilliseconds(600_000), pretimeoutNegotiated: false);
        core.Control(WatchdogCommand.SetTimeout, TimeSpan.FromMilliseconds(2_000), pretimeoutNegotiated: false);
        Assert.That(QueuedDue(queue, core), Is.EqualTo(time.GetTimestamp() + TimeSpan.FromSeconds(2).Ticks));

        time.Advance(TimeSpan.FromSeconds(2));
        Assert.That(listener.Kinds, Has.Member(WatchdogTransitionKind.Expired));
    }

    [Test]
    public void Pretimeout_QueuedAtThePretimeoutPoint_ThenAtTheDeadline()
    {
        var time = NewTime();
        var listener = new RecordingListener();
        using var core = new WatchdogTimer(time, new WatchdogDeviceOptions(), listener);
        core.Control(WatchdogCommand.Start, TimeSpan.FromMilliseconds(10_000), pretimeoutNegotiated: true);
        core.Control(WatchdogCommand.SetPretimeout, TimeSpan.FromMilliseconds(3_000), pretimeoutNegotiated: true);

        time.Advance(TimeSpan.FromSeconds(7) - s_tick);
        Assert.That(listener.Kinds, Is.EqualTo(new[] { WatchdogTransitionKind.Armed }));
        time.Advance(s_tick);
        Assert.That(listener.Kinds, Is.EqualTo(new[] { WatchdogTransitionKind.Armed, WatchdogTransitionKind.Pretimeout }));
        time.Advance(TimeSpan.FromSeconds(3));
        Assert.That(listener.Kinds, Is.EqualTo(new[] { WatchdogTransitionKind.Armed, WatchdogTransitionKind.Pretimeout, WatchdogTransitionKind.Expired }));
    }

    [Test]
    public void OnDue_EntryThatThrows_IsToldAndTheQueueKeepsFiringEveryOtherEntry()
    {
        var time = NewTime();
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(time);
        var fired = new List<(int Id, long At)>();
        var faulty = new CallbackEntry { Due = () => throw new InvalidOperationException("entry bug") };
        var sameTime = new RecordingEntry(1, time, fired);
        var later = new RecordingEntry(2, time, fired);
        queue.Schedule(faulty, queue.TimestampAfter(TimeSpan.FromSeconds(1)));
        queue.Schedule(sameTime, queue.TimestampAfter(TimeSpan.FromSeconds(1)));
        queue.Schedule(later, queue.TimestampAfter(TimeSpan.FromSeconds(2)));

        Assert.That(() => time.Advance(TimeSpan.FromSeconds(1)), Throws.Nothing, "the exception stays on the queue's side");
        time.Advance(TimeSpan.FromSeconds(1));
        var afterFault = new RecordingEntry(3, time, fired);
        queue.Schedule(afterFault, queue.TimestampAfter(TimeSpan.FromSeconds(1)));
        time.Advance(TimeSpan.FromSeconds(1));

        Assert.Multiple(() =>
        {
            Assert.That(faulty.Faults.Select(f => f.Message), Is.EqualTo(new[] { "entry bug" }));
            Assert.That(fired.Select(f => f.Id), Is.EqualTo(new[] { 1, 2, 3 }), "the queue is not left marked as firing");
            Assert.That(queue.Count, Is.Zero);
        });
    }

    [Test]
    public void Core_ListenerThrowsAtThePretimeout_TheCoreStaysScheduledAndExpiresAtItsDeadline()
    {
        var time = NewTime();
        var listener = new RecordingListener(time) { ThrowOn = kind => kind == WatchdogTransitionKind.Pretimeout };
        using var core = new WatchdogTimer(time, new WatchdogDeviceOptions(), listener);
        core.Control(WatchdogCommand.Start, TimeSpan.FromMilliseconds(10_000), pretimeoutNegotiated: true);
        core.Control(WatchdogCommand.SetPretimeout, TimeSpan.FromMilliseconds(3_000), pretimeoutNegotiated: true);
        DateTimeOffset start = time.GetUtcNow();

        Assert.That(() => time.Advance(TimeSpan.FromSeconds(7)), Throws.Nothing);
        time.Advance(TimeSpan.FromSeconds(3) - s_tick);
        Assert.That(listener.Kinds, Is.EqualTo(new[] { WatchdogTransitionKind.Armed }), "no expiry before the deadline");
        time.Advance(s_tick);

        Assert.Multiple(() =>
        {
            Assert.That(listener.TimerFaults, Has.Count.EqualTo(1));
            Assert.That(listener.Kinds, Is.EqualTo(new[] { WatchdogTransitionKind.Armed, WatchdogTransitionKind.Expired }));
            Assert.That(listener.ExpiredAt, Is.EqualTo(new[] { start + TimeSpan.FromSeconds(10) }), "armed, so never left without its timer");
        });
    }

    [Test]
    public void Pause_QueuedEntryFiresWithoutTransition_ResumeQueuesTheRest()
    {
        var time = NewTime();
        var listener = new RecordingListener();
        using var core = new WatchdogTimer(time, new WatchdogDeviceOptions { DefaultTimeout = TimeSpan.FromSeconds(10), ResumeGrace = TimeSpan.Zero }, listener);
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(time);
        core.Heartbeat();
        time.Advance(TimeSpan.FromSeconds(4));
        core.Pause();

        time.Advance(TimeSpan.FromHours(1));
        Assert.Multiple(() =>
        {
            Assert.That(listener.Kinds, Does.Not.Contain(WatchdogTransitionKind.Expired));
            Assert.That(queue.Count, Is.Zero, "the paused core dropped its entry when it came due");
        });

        core.Resume();
        Assert.That(queue.Count, Is.EqualTo(1));
        time.Advance(TimeSpan.FromSeconds(6) - s_tick);
        Assert.That(listener.Kinds, Does.Not.Contain(WatchdogTransitionKind.Expired));
        time.Advance(s_tick);
        Assert.That(listener.Kinds, Has.Member(WatchdogTransitionKind.Expired), "6 s of run time were left at the pause");
    }

    [Test]
    public void ManyCores_EachExpiresExactlyAtItsOwnDeadline()
    {
        var time = NewTime();
        var cores = new List<(WatchdogTimer Core, RecordingListener Listener, TimeSpan Deadline)>();
        var options = new WatchdogDeviceOptions();
        for (int i = 0; i < 500; i++)
        {
            var listener = new RecordingListener(time);
            var core = new WatchdogTimer(time, options, listener);
            uint timeoutMs = 1_000 + (uint)(i * 37 % 9_000);
            core.Control(WatchdogCommand.Start, TimeSpan.FromMilliseconds(timeoutMs), pretimeoutNegotiated: false);
            cores.Add((core, listener, TimeSpan.FromMilliseconds(timeoutMs)));
        }

        // Half keep pinging for a while: their deadlines move later, lazily.
        TimeSpan pingedUntil = TimeSpan.FromMilliseconds(900);
        for (int step = 0; step < 9; step++)
        {
            time.Advance(TimeSpan.FromMilliseconds(100));
            for (int i = 0; i < cores.Count; i += 2)
            {
                cores[i].Core.Heartbeat();
            }
        }

        DateTimeOffset start = time.GetUtcNow() - pingedUntil;
        for (int ms = 0; ms < 11_000; ms++)
        {
            time.Advance(TimeSpan.FromMilliseconds(1));
        }

        Assert.Multiple(() =>
        {
            for (int i = 0; i < cores.Count; i++)
            {
                (WatchdogTimer _, RecordingListener listener, TimeSpan timeout) = cores[i];
                TimeSpan expected = (i % 2 == 0 ? pingedUntil : TimeSpan.Zero) + timeout;
                Assert.That(listener.ExpiredAt, Is.EqualTo(new[] { start + expected }), $"core {i}");
            }
        });

        foreach ((WatchdogTimer core, _, _) in cores)
        {
            core.Dispose();
        }
    }

    [Test]
    public void Dispose_ManyArmedDevices_LeaveNothingQueued_AndNeverFire()
    {
        var time = NewTime();
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(time);
        var devices = new List<WatchdogDevice>();
        for (int i = 0; i < 10_000; i++)
        {
            var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "d" + i, DefaultTimeout = TimeSpan.FromSeconds(1 + (i % 30)) }, time);
            device.Timer.Heartbeat();
            devices.Add(device);
        }

        Assert.That(queue.Count, Is.EqualTo(10_000));
        foreach (WatchdogDevice device in devices)
        {
            device.Dispose();
        }

        Assert.That(queue.Count, Is.Zero);
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.That(devices.Sum(d => d.GetStatus().Expired ? 1 : 0), Is.Zero, "a disposed device's entry was removed, not left to fire");
    }

    [Test]
    public void SystemClock_DedicatedThreadFiresTheEntry_NeverBeforeItsDue()
    {
        WatchdogTimerQueue queue = WatchdogTimerQueue.For(TimeProvider.System);
        Assert.That(WatchdogTimerQueue.For(TimeProvider.System), Is.SameAs(queue), "one queue for the system clock");
        using var done = new ManualResetEventSlim();
        long firedAt = 0;
        string? thread = null;
        var entry = new CallbackEntry
        {
            Due = () =>
            {
                firedAt = TimeProvider.System.GetTimestamp();
                thread = Thread.CurrentThread.Name;
                done.Set();
            },
        };
        long due = queue.TimestampAfter(TimeSpan.FromMilliseconds(20));
        queue.Schedule(entry, due);

        Assert.That(done.Wait(TimeSpan.FromSeconds(30)), Is.True, "fired");
        Assert.Multiple(() =>
        {
            Assert.That(firedAt, Is.GreaterThanOrEqualTo(due));
            Assert.That(thread, Is.EqualTo("VirtioPanic watchdog timers"));
            Assert.That(entry.QueueIndex, Is.EqualTo(-1), "no longer queued once fired");
        });
    }

    private static FakeTimeProvider NewTime() => new(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));

    private static long QueuedDue(WatchdogTimerQueue queue, WatchdogTimerEntry entry)
    {
        Assert.That(entry.QueueIndex, Is.GreaterThanOrEqualTo(0), "queued");
        Assert.That(queue.Count, Is.EqualTo(1));
        return entry.QueueDue;
    }

    private sealed class RecordingEntry : WatchdogTimerEntry
    {
        private readonly FakeTimeProvider _time;
        private readonly List<(int Id, long At)> _fired;

        public RecordingEntry(int id, FakeTimeProvider time, List<(int Id, long At)> fired)
        {
            Id = id;
            _time = time;
            _fired = fired;
        }

        public int Id { get; }

        // The due it was queued at when it fired (the queue leaves QueueDue as it was).
        public long ScheduledDue { get; private set; }

        internal override void OnDue()
        {
            ScheduledDue = QueueDue;
            _fired.Add((Id, _time.GetTimestamp()));
        }
    }

    private sealed class CallbackEntry : WatchdogTimerEntry
    {
        public Action Due { get; set; } = () => { };

        public List<Exception> Faults { get; } = [];

        internal override void OnDue() => Due();

        internal override void OnFault(Exception exception) => Faults.Add(exception);
    }

    private sealed class RecordingListener : IWatchdogTimerListener
    {
        private readonly TimeProvider? _time;

        public RecordingListener(TimeProvider? time = null) => _time = time;

        public List<WatchdogTransitionKind> Kinds { get; } = [];

        public List<DateTimeOffset> ExpiredAt { get; } = [];

        public void OnTransition(in WatchdogTransition transition)
        {
            Raise(transition.Kind);
            Kinds.Add(transition.Kind);
            if (transition.Kind == WatchdogTransitionKind.Expired && _time is not null)
            {
                ExpiredAt.Add(_time.GetUtcNow());
            }
        }

        public void OnNoticePending()
        {
        }

        public Func<WatchdogTransitionKind, bool> ThrowOn { get; set; } = _ => false;

        public List<Exception> TimerFaults { get; } = [];

        public void OnTimerFault(Exception exception) => TimerFaults.Add(exception);

        public void Raise(WatchdogTransitionKind kind)
        {
            if (ThrowOn(kind))
            {
                throw new InvalidOperationException($"listener fault on {kind}");
            }
        }
    }
}
