using System.Diagnostics;

namespace VirtioPanic.Device.Timer;

// Design: per-vCPU stall detection (spec §6.12, VIRTIO_WDT_F_VCPU_STALL).
//
// Slots. One slot per vCPU index, in parallel arrays: _state (UNTRACKED 0, TRACKED 1, STALLED 2),
// _lastPet (that vCPU's run time at its last PET, 100 ns ticks of the vCPU clock), and, guarded by
// _lock only, a stall's VM run time at stage one, its vCPU run time since the pet at stage one and
// its notice order (0: no notice pending).
//
// Pets are O(1) and take no lock in the common case (a TRACKED vCPU petting again). The pet's fast
// path stores _lastPet with Interlocked.Exchange (a full fence), then reads _state; the monitor,
// under _lock, moves a slot TRACKED -> STALLED with Interlocked.CompareExchange (a full fence) and
// then re-reads _lastPet. This is Dekker's pattern: at least one side sees the other's store. So
// either the monitor sees the new _lastPet and puts the slot back to TRACKED without an event (the
// pet won the race), or the pet sees STALLED and takes the slow path, which waits for _lock and
// then reports the recovery. Every other transition (UNTRACKED -> TRACKED, STALLED -> TRACKED,
// OFFLINE, stage two, panic, reset, restore) happens under _lock. Nothing a pet does touches the
// timer queue, except the first PET of an untracked slot when no check is queued early enough.
//
// Time. Stage one counts the vCPU's run time (IVcpuRunClock; the VM's run time when the host gave
// none, WDT-DEV-49); stage two, the resume grace and the "paused" test use the VM run time of the
// device's WatchdogTimer (paused with the VM and while suspended). Neither clock advances faster
// than the TimeProvider's, so the monitor's one queue entry is set at the smallest remaining time
// of any slot: nothing can come due before it, and when it fires the monitor re-reads the clocks
// (a vCPU that ran less than the wall time needs another, later check). While the VM is paused a
// due check does nothing and Resume schedules the next one.
//
// A vCPU whose clock lagged the wall clock is re-checked no sooner than 1% of the timeout later
// (_lagFloor), so a guest cannot make checks arbitrarily frequent by halting a vCPU just before
// its deadline; stage one is then at most that late, never early.
//
// Bounded work: a check is O(vcpu_count) (at most 1024 slots) with no allocation unless something
// fires; events are collected under _lock and raised after it is released. Lock order:
// WatchdogDevice._lock -> VcpuStallMonitor._lock -> WatchdogTimer._lock -> WatchdogTimerQueue._lock.
internal sealed class VcpuStallMonitor : WatchdogTimerEntry, IDisposable
{
    internal const int Untracked = 0;
    internal const int Tracked = 1;
    internal const int Stalled = 2;

    // In a snapshot only: an UNTRACKED slot whose stage two fired and that has not petted since
    // (_bittenAt), so that its first pet after a restore is still reported as a recovery (§6.12).
    internal const int Bitten = 3;

    private static readonly TimeSpan s_minDue = TimeSpan.FromMilliseconds(1);
    private static readonly TimeSpan s_maxDue = TimeSpan.FromMilliseconds(uint.MaxValue - 1);
    private static readonly TimeSpan s_faultRetry = TimeSpan.FromSeconds(1);

    private readonly Lock _lock = new();
    private readonly WatchdogTimer _vm;
    private readonly IVcpuRunClock? _clock;
    private readonly WatchdogTimerQueue _timers;
    private readonly IVcpuStallListener _listener;
    private readonly NoticeOrder _order;
    private readonly TimeSpan _lagFloor;

    // Lock-free fields, with the contract of the design note: _state written with Volatile.Write or
    // Interlocked under _lock, read anywhere with Volatile.Read; _lastPet written by pets with
    // Interlocked.Exchange (and under _lock at restore), read with Volatile.Read.
    private readonly int[] _state;
    private readonly long[] _lastPet;

    // Guarded by _lock.
    private readonly long[] _stalledAt;     // VM run time at stage one (ticks)
    private readonly long[] _stalledFor;    // the vCPU's run time since its last pet at stage one (ticks)
    private readonly long[] _noticeOrder;   // 0: no notice pending
    private readonly long[] _bittenAt;      // VM run time at stage one of a slot whose stage two fired and that has not petted since; -1: none
    private int _pendingNotices;
    private TimeSpan _graceFloor;           // VM run time before which nothing fires (WDT-DEV-48)
    private bool _disposed;

    internal VcpuStallMonitor(WatchdogTimer vm, IVcpuRunClock? clock, int count, TimeSpan timeout, TimeSpan secondStage, TimeSpan grace,
        TimeProvider time, NoticeOrder order, IVcpuStallListener listener)
    {
        _vm = vm;
        _clock = clock;
        Count = count;
        Timeout = timeout;
        SecondStage = secondStage;
        Grace = grace;
        _lagFloor = timeout / 100;
        _order = order;
        _listener = listener;
        _timers = WatchdogTimerQueue.For(time);
        _state = new int[count];
        _lastPet = new long[count];
        _stalledAt = new long[count];
        _stalledFor = new long[count];
        _noticeOrder = new long[count];
        _bittenAt = new long[count];
        _bittenAt.AsSpan().Fill(-1);
    }

    internal int Count { get; }

    internal TimeSpan Timeout { get; }

    internal TimeSpan SecondStage { get; }

    internal TimeSpan Grace { get; }

    internal bool HasVcpuClock => _clock is not null;

    // WDT-DEV-41: PET. The caller checked the index (below Count). O(1); lock-free unless the slot
    // is not TRACKED.
    internal void Pet(int vcpu)
    {
        long now = VcpuNow(vcpu).Ticks;

        // Full fence: the store is visible before the state is read (pairs with the monitor's CAS then re-read).
        Interlocked.Exchange(ref _lastPet[vcpu], now);
        if (Volatile.Read(ref _state[vcpu]) == Tracked)
        {
            return;
        }

        PetSlow(vcpu);
    }

    // WDT-DEV-41: OFFLINE. Stops tracking, discards the pending notice.
    internal void Offline(int vcpu)
    {
        lock (_lock)
        {
            UntrackUnsynchronized(vcpu);
        }
    }

    // WDT-DEV-47: a panic took over, or the device was reset.
    internal void UntrackAll()
    {
        lock (_lock)
        {
            for (int i = 0; i < Count; i++)
            {
                UntrackUnsynchronized(i);
            }
        }
    }

    // The VM (or the suspended session) runs again: the resume grace applies to both stages (WDT-DEV-48).
    internal void OnResumed()
    {
        lock (_lock)
        {
            TimeSpan vm = _vm.GetRunTime(out _);
            _graceFloor = WatchdogTimer.Max(_graceFloor, vm + Grace);
        }

        // The next check at the earliest time anything can come due (nothing fires from here).
        Check(fire: false);
    }

    internal (int Tracked, int Stalled) Counts()
    {
        lock (_lock)
        {
            int tracked = 0;
            int stalled = 0;
            for (int i = 0; i < Count; i++)
            {
                int state = Volatile.Read(ref _state[i]);
                tracked += state == Tracked ? 1 : 0;
                stalled += state == Stalled ? 1 : 0;
            }

            return (tracked, stalled);
        }
    }

    internal int StateOf(int vcpu) => Volatile.Read(ref _state[vcpu]);

    // The oldest pending VCPU_STALL notice (WDT-DEV-44), O(1) when none is pending.
    internal bool TryPeekNotice(out VcpuNotice notice)
    {
        notice = default;
        lock (_lock)
        {
            if (_pendingNotices == 0)
            {
                return false;
            }

            int best = -1;
            for (int i = 0; i < Count; i++)
            {
                if (_noticeOrder[i] != 0 && (best < 0 || _noticeOrder[i] < _noticeOrder[best]))
                {
                    best = i;
                }
            }

            if (best < 0)
            {
                return false;
            }

            TimeSpan vm = _vm.GetRunTime(out _);
            TimeSpan left = WatchdogTimer.Max(TimeSpan.FromTicks(_stalledAt[best]) + SecondStage - vm, TimeSpan.Zero);
            notice = new VcpuNotice(_noticeOrder[best], best, TimeSpan.FromTicks(_stalledFor[best]), Timeout, left);
            return true;
        }
    }

    internal void MarkNoticeDelivered(int vcpu, long order)
    {
        lock (_lock)
        {
            if (_noticeOrder[vcpu] == order && order != 0)
            {
                _noticeOrder[vcpu] = 0;
                _pendingNotices--;
            }
        }
    }

    internal VcpuSlotState[] Save()
    {
        lock (_lock)
        {
            var slots = new VcpuSlotState[Count];
            for (int i = 0; i < Count; i++)
            {
                int state = Volatile.Read(ref _state[i]);
                slots[i] = state == Untracked
                    ? _bittenAt[i] >= 0 ? new VcpuSlotState(Bitten, TimeSpan.Zero, TimeSpan.FromTicks(_bittenAt[i]), TimeSpan.Zero, 0) : default
                    : new VcpuSlotState(state, WatchdogTimer.Max(VcpuNow(i) - TimeSpan.FromTicks(Volatile.Read(ref _lastPet[i])), TimeSpan.Zero),
                        state == Stalled ? TimeSpan.FromTicks(_stalledAt[i]) : TimeSpan.Zero,
                        state == Stalled ? TimeSpan.FromTicks(_stalledFor[i]) : TimeSpan.Zero,
                        state == Stalled ? _noticeOrder[i] : 0);
            }

            return slots;
        }
    }

    internal TimeSpan GraceFloor
    {
        get
        {
            lock (_lock)
            {
                return _graceFloor;
            }
        }
    }

    // Restores validated slots (WatchdogDevice.TryParse checked them against this monitor): each
    // tracked slot's last pet is re-based on this host's vCPU clock, the grace floor raised. The
    // VM clock is paused after a restore; Resume schedules the next check.
    internal void Restore(VcpuSlotState[] slots, TimeSpan graceFloor)
    {
        lock (_lock)
        {
            _pendingNotices = 0;
            for (int i = 0; i < Count; i++)
            {
                VcpuSlotState slot = slots[i];
                Interlocked.Exchange(ref _lastPet[i], (VcpuNow(i) - slot.SincePet).Ticks);
                _stalledAt[i] = slot.StalledAt.Ticks;
                _stalledFor[i] = slot.StalledFor.Ticks;
                _noticeOrder[i] = slot.NoticeOrder;
                _bittenAt[i] = slot.State == Bitten ? slot.StalledAt.Ticks : -1;
                _pendingNotices += slot.NoticeOrder != 0 ? 1 : 0;
                _order.AtLeast(slot.NoticeOrder);
                Volatile.Write(ref _state[i], slot.State == Bitten ? Untracked : slot.State);
            }

            TimeSpan vm = _vm.GetRunTime(out _);
            _graceFloor = WatchdogTimer.Max(graceFloor, vm + Grace);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            Volatile.Write(ref DueHint, long.MaxValue);
            _timers.Remove(this);
        }
    }

    internal override void OnDue() => Check(fire: true);

    internal override void OnFault(Exception exception)
    {
        lock (_lock)
        {
            if (!_disposed)
            {
                long at = _timers.TimestampAfter(s_faultRetry);
                Volatile.Write(ref DueHint, at);
                _timers.Schedule(this, at);
            }
        }

        _listener.OnTimerFault(exception);
    }

    private TimeSpan VcpuNow(int vcpu) => _clock is { } clock ? clock.GetRunTime(vcpu) : _vm.GetRunTime(out _);

    private void PetSlow(int vcpu)
    {
        VcpuStallTransition recovered = default;
        lock (_lock)
        {
            switch (Volatile.Read(ref _state[vcpu]))
            {
                case Untracked:
                    if (_bittenAt[vcpu] >= 0)
                    {
                        // The first pet after stage two is a recovery too (the host's stall policy
                        // may be running a staged escalation that a recovered vCPU cancels); the
                        // slot is tracked afresh either way.
                        TimeSpan now = _vm.GetRunTime(out _);
                        recovered = new VcpuStallTransition(VcpuStallTransitionKind.Recovered, vcpu, now)
                        {
                            SinceStall = WatchdogTimer.Max(now - TimeSpan.FromTicks(_bittenAt[vcpu]), TimeSpan.Zero),
                        };
                        _bittenAt[vcpu] = -1;
                    }

                    Volatile.Write(ref _state[vcpu], Tracked);
                    RescheduleUnsynchronized(Timeout);
                    break;
                case Stalled:
                    // WDT-DEV-45: recovery; the undelivered notice goes, stage two will not fire.
                    TimeSpan vm = _vm.GetRunTime(out _);
                    recovered = new VcpuStallTransition(VcpuStallTransitionKind.Recovered, vcpu, vm)
                    {
                        SinceStall = WatchdogTimer.Max(vm - TimeSpan.FromTicks(_stalledAt[vcpu]), TimeSpan.Zero),
                        StalledFor = TimeSpan.FromTicks(_stalledFor[vcpu]),
                    };
                    DropNoticeUnsynchronized(vcpu);
                    Volatile.Write(ref _state[vcpu], Tracked);
                    RescheduleUnsynchronized(Timeout);
                    break;
                default:
                    // TRACKED again: the monitor saw this pet and undid its stage one (design note).
                    break;
            }
        }

        if (recovered.Kind != VcpuStallTransitionKind.None)
        {
            _listener.OnTransition(recovered);
        }
    }

    private void UntrackUnsynchronized(int vcpu)
    {
        DropNoticeUnsynchronized(vcpu);
        _stalledAt[vcpu] = 0;
        _stalledFor[vcpu] = 0;
        _bittenAt[vcpu] = -1;
        Volatile.Write(ref _state[vcpu], Untracked);
    }

    private void DropNoticeUnsynchronized(int vcpu)
    {
        if (_noticeOrder[vcpu] != 0)
        {
            _noticeOrder[vcpu] = 0;
            _pendingNotices--;
        }
    }

    // fire: the queue's call (the entry is out of the queue; stages that are due fire). Otherwise a
    // resume's look at when the next check is due, which changes no slot.
    private void Check(bool fire)
    {
        List<VcpuStallTransition>? fired = null;
        bool notice = false;
        lock (_lock)
        {
            AssertInvariants();
            if (fire)
            {
                // The queue took the entry out before calling: whatever is queued from here on is new.
                Volatile.Write(ref DueHint, long.MaxValue);
            }

            TimeSpan vm = _vm.GetRunTime(out bool running);
            if (_disposed || !running)
            {
                return;   // paused or suspended: OnResumed schedules the next check
            }

            if (vm < _graceFloor)
            {
                // Inside the resume grace nothing fires (WDT-DEV-48); look again when it ends.
                if (HasSlotsUnsynchronized())
                {
                    RescheduleUnsynchronized(_graceFloor - vm);
                }

                return;
            }

            TimeSpan next = TimeSpan.MaxValue;
            for (int i = 0; i < Count; i++)
            {
                switch (Volatile.Read(ref _state[i]))
                {
                    case Tracked:
                        {
                            long last = Volatile.Read(ref _lastPet[i]);
                            TimeSpan elapsed = VcpuNow(i) - TimeSpan.FromTicks(last);
                            if (elapsed < Timeout || !fire)
                            {
                                // A vCPU that ran less than the wall time since the last check is
                                // looked at again no sooner than 1% of the timeout from now: a guest
                                // that halts a vCPU just short of its deadline cannot make the shared
                                // timer thread scan every millisecond. Stage one is then at most that
                                // late, never early (spec §6.12).
                                TimeSpan remaining = Timeout - elapsed;
                                next = Min(next, fire && _clock is not null && remaining > TimeSpan.Zero && remaining < _lagFloor ? _lagFloor : remaining);
                                break;
                            }

                            // WDT-DEV-43: stage one. Full fence, then re-read: a pet that raced in wins.
                            if (Interlocked.CompareExchange(ref _state[i], Stalled, Tracked) != Tracked)
                            {
                                break;
                            }

                            if (Volatile.Read(ref _lastPet[i]) != last)
                            {
                                Volatile.Write(ref _state[i], Tracked);
                                next = Min(next, s_minDue);
                                break;
                            }

                            _stalledAt[i] = vm.Ticks;
                            _stalledFor[i] = elapsed.Ticks;
                            _noticeOrder[i] = _order.Next();
                            _pendingNotices++;
                            notice = true;
                            (fired ??= []).Add(new VcpuStallTransition(VcpuStallTransitionKind.Stalled, i, vm) { StalledFor = elapsed });
                            next = Min(next, SecondStage);
                            break;
                        }

                    case Stalled:
                        {
                            TimeSpan since = vm - TimeSpan.FromTicks(_stalledAt[i]);
                            if (since < SecondStage || !fire)
                            {
                                next = Min(next, SecondStage - since);
                                break;
                            }

                            // WDT-DEV-46: stage two; the vCPU is no longer tracked.
                            (fired ??= []).Add(new VcpuStallTransition(VcpuStallTransitionKind.Expired, i, vm)
                            {
                                SinceStall = since,
                                StalledFor = TimeSpan.FromTicks(_stalledFor[i]),
                            });
                            long stalledAt = _stalledAt[i];
                            UntrackUnsynchronized(i);
                            _bittenAt[i] = stalledAt;
                            break;
                        }

                    default:
                        break;
                }
            }

            if (next != TimeSpan.MaxValue)
            {
                RescheduleUnsynchronized(next);
            }
        }

        if (fired is not null)
        {
            foreach (VcpuStallTransition transition in fired)
            {
                _listener.OnTransition(transition);
            }
        }

        if (notice)
        {
            _listener.OnNoticePending();
        }
    }

    // Makes sure a check is queued no later than `due` from now (lazy: an earlier entry stays).
    private void RescheduleUnsynchronized(TimeSpan due)
    {
        if (_disposed)
        {
            return;
        }

        // A deadline already reached is looked at 1 ms from now (as WatchdogTimer does); any other
        // due is exact, so a stage fires when its time comes and not a millisecond later.
        due = due <= TimeSpan.Zero ? s_minDue : due > s_maxDue ? s_maxDue : due;
        long at = _timers.TimestampAfter(due);
        if (at >= DueHint)
        {
            return;
        }

        Volatile.Write(ref DueHint, at);
        _timers.Schedule(this, at);
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private bool HasSlotsUnsynchronized()
    {
        for (int i = 0; i < Count; i++)
        {
            if (Volatile.Read(ref _state[i]) != Untracked)
            {
                return true;
            }
        }

        return false;
    }

    [Conditional("DEBUG")]
    private void AssertInvariants()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        Debug.Assert(_pendingNotices >= 0 && _pendingNotices <= Count);
    }
}
