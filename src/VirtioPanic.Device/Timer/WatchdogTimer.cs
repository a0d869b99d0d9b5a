using System.Diagnostics;

namespace VirtioPanic.Device.Timer;

// Design: the watchdog state machine and the VM run-time clock (spec/virtio-watchdog.md §6.1).
//
// Run time: the device counts only time during which the VM runs. _runBase holds the run time
// accumulated up to the last resume; while running, the time since _resumedAt (a TimeProvider
// timestamp) is added. Every deadline is a point in run time, so pausing the VM simply stops the
// clock: nothing has to be shifted, and a paused VM can never expire.
//
// Deadline = max(last keepalive + timeout, grace floor). The grace floor is raised on resume and
// restore to "now + grace", which gives the guest at least the grace period after a slow resume.
// It is raised whether or not the watchdog is armed at that moment, and nothing the guest does
// lowers it (arming, STOP then START, SET_TIMEOUT, a device reset): inside the window no countdown
// can end before the window does (WDT-DEV-9, WDT-DEV-35). Outside the window the floor lies in the
// past and max() ignores it. The pretimeout point is deadline - pretimeout, fired once per countdown.
//
// Arithmetic: every time here is bounded (run time by MaxRunTime, checked at restore; timeouts and
// the grace by 2^32 - 1 ms, checked with the options), so no sum of them can overflow TimeSpan.
//
// Timer: this timer is an entry of the TimeProvider's shared WatchdogTimerQueue, queued at most once,
// at or before its next action (pretimeout point or deadline) while armed and running. The queue
// entry is lazy: a change that moves the next action later (every keepalive, a stop, a pause)
// leaves an earlier entry where it is, so the keepalive path never touches the queue; only a move
// earlier (arm after a long idle, a shorter timeout, a pretimeout, a resume) reschedules it. OnDue
// recomputes from the clock, so an entry that fires early only re-queues at the true next action
// and one that fires late acts at once; a disarmed or paused timer ignores it. Dispose removes it.
//
// Threading: one Lock guards everything here. It is held only for O(1) bookkeeping (plus an
// O(log n) queue update when the next action moves earlier): never while touching guest memory,
// raising interrupts or publishing events. Transitions are collected under the lock and handed to
// the listener after it is released, on the calling thread (a vCPU, a host thread, or the queue's
// timer thread).
internal sealed class WatchdogTimer : WatchdogTimerEntry, IDisposable
{
    // The most VM run time a device state may carry (a restored snapshot is checked against it).
    // Two hundred years: no VM has run longer, and it keeps run time + timeout + grace (each at most
    // 2^32 - 1 ms) some 29 000 years away from TimeSpan.MaxValue, so deadlines never overflow.
    internal static readonly TimeSpan MaxRunTime = TimeSpan.FromDays(200 * 365);

    private static readonly TimeSpan s_maxTimerDue = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    // After an unexpected exception in the timer callback, the entry is retried this much later
    // (bounded work and logging however often it fails; the watchdog is never left unscheduled).
    private static readonly TimeSpan s_faultRetry = TimeSpan.FromSeconds(1);

    // An action already due is scheduled this far ahead rather than at zero (kept from when each
    // watchdog had its own ITimer, whose provider could run a zero-due callback inside Change;
    // tests rely on the 1 ms).
    private static readonly TimeSpan s_minTimerDue = TimeSpan.FromMilliseconds(1);

    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly WatchdogTimerQueue _timers;
    private readonly IWatchdogTimerListener _listener;
    private readonly NoticeOrder _order;
    private readonly TimeSpan _defaultTimeout;
    private readonly TimeSpan _minTimeout;
    private readonly TimeSpan _maxTimeout;
    private readonly TimeSpan _grace;

    // Run-time clock.
    private TimeSpan _runBase;
    private long _resumedAt;
    private bool _paused;

    // Watchdog.
    private bool _armed;
    private bool _nowayout;
    private bool _expired;
    private bool _pretimeoutFired;
    private TimeSpan _timeout;
    private TimeSpan _pretimeout;
    private TimeSpan _lastKeepalive;
    private TimeSpan _graceFloor;
    private long _countdown;

    // Pending pretimeout notice for the guest (noticeq).
    private bool _noticesEnabled;
    private bool _noticePending;
    private long _noticeCountdown;
    private TimeSpan _noticeTimeLeft;
    private long _noticeOrder;

    // Timer: DueHint (inherited) is the due (a timestamp of _time) of the next action this timer
    // published to _timers, long.MaxValue when it holds no entry or the entry has fired (OnDue
    // clears it first). Written under _lock only (Volatile.Write: the queue's firing thread reads it
    // under the queue's lock to move a pinged entry later without calling us).
    private bool _disposed;

    internal WatchdogTimer(TimeProvider time, WatchdogDeviceOptions options, IWatchdogTimerListener listener, NoticeOrder? order = null)
    {
        _order = order ?? new NoticeOrder();
        _time = time;
        _listener = listener;
        _defaultTimeout = options.DefaultTimeout;
        _minTimeout = options.MinTimeout;
        _maxTimeout = options.MaxTimeout;
        _grace = options.ResumeGrace;
        _timeout = _defaultTimeout;
        _paused = options.StartPaused;
        _resumedAt = time.GetTimestamp();
        _timers = WatchdogTimerQueue.For(time);
    }

    // The resume grace (WatchdogDeviceOptions.ResumeGrace): a grace floor is never further ahead
    // of the run time than this.
    internal TimeSpan Grace => _grace;

    // The VM run time and whether it is counting (not paused, not suspended).
    internal TimeSpan GetRunTime(out bool running)
    {
        lock (_lock)
        {
            running = !_paused;
            return RunNowUnsynchronized();
        }
    }

    internal TimeSpan RunTime
    {
        get
        {
            lock (_lock)
            {
                return RunNowUnsynchronized();
            }
        }
    }

    // Takes the timer out of the shared queue, so disposed devices leave nothing behind.
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            Volatile.Write(ref DueHint, long.MaxValue);
            _timers.Remove(this);
        }
    }

    internal override void OnDue() => OnTimer();

    // The timer queue caught an exception from OnDue (a bug, or a listener that threw): the queue
    // and its thread carry on; this timer tries again a little later while it is armed, so it is
    // never left armed without a timer, and tells its listener (which logs, rate-limited).
    internal override void OnFault(Exception exception)
    {
        lock (_lock)
        {
            if (_armed && !_paused && !_disposed)
            {
                long at = _timers.TimestampAfter(s_faultRetry);
                Volatile.Write(ref DueHint, at);
                _timers.Schedule(this, at);
            }
        }

        _listener.OnTimerFault(exception);
    }

    // A baseline heartbeat: arms a disarmed watchdog, else restarts the countdown (WDT-DEV-5).
    internal void Heartbeat()
    {
        WatchdogTransition transition = default;
        lock (_lock)
        {
            TimeSpan now = RunNowUnsynchronized();
            if (!_armed)
            {
                ArmUnsynchronized(now);
                transition = new WatchdogTransition(WatchdogTransitionKind.Armed, now) { Timeout = _timeout, ByHeartbeat = true };
            }
            else
            {
                KeepaliveUnsynchronized(now);
            }
        }

        Raise(transition);
    }

    // Executes one control command (spec §6.3) and returns its result with the state after it.
    // `value` is the request's value_ms (zero when the command takes none).
    internal WatchdogControlOutcome Control(WatchdogCommand command, TimeSpan value, bool pretimeoutNegotiated)
    {
        WatchdogTransition transition = default;
        WatchdogControlOutcome outcome;
        lock (_lock)
        {
            TimeSpan now = RunNowUnsynchronized();
            WatchdogCommandResult result = ExecuteUnsynchronized(command, value, pretimeoutNegotiated, now, ref transition);
            outcome = OutcomeUnsynchronized(result, now);
        }

        Raise(transition);
        return outcome;
    }

    internal void EnableNotices(bool enabled)
    {
        lock (_lock)
        {
            _noticesEnabled = enabled;
            if (!enabled)
            {
                _noticePending = false;
            }
        }
    }

    internal bool TryGetPendingNotice(out PendingNotice notice)
    {
        lock (_lock)
        {
            notice = new PendingNotice(_noticeCountdown, _noticeTimeLeft, _timeout, _pretimeout, _noticeOrder);
            return _noticePending;
        }
    }

    internal void MarkNoticeDelivered(long countdown)
    {
        lock (_lock)
        {
            if (_noticePending && _noticeCountdown == countdown)
            {
                _noticePending = false;
            }
        }
    }

    // Device reset (vmReset false) or host VM reset (true). Returns whether a NOWAYOUT watchdog keeps running (WDT-DEV-31).
    internal bool Reset(bool vmReset)
    {
        WatchdogTransition transition = default;
        bool keptRunning;
        lock (_lock)
        {
            TimeSpan now = RunNowUnsynchronized();
            _noticesEnabled = false;
            _noticePending = false;
            keptRunning = _armed && _nowayout && !vmReset;
            if (!keptRunning)
            {
                if (_armed)
                {
                    transition = new WatchdogTransition(WatchdogTransitionKind.Stopped, now)
                    {
                        StopReason = vmReset ? WatchdogStopReason.VmReset : WatchdogStopReason.DeviceReset,
                        Timeout = _timeout,
                    };
                }

                _armed = false;
                _expired = false;
                _nowayout = false;
                _pretimeoutFired = false;
                _timeout = _defaultTimeout;
                _pretimeout = TimeSpan.Zero;
                _countdown++;
                RescheduleUnsynchronized(now);
            }
        }

        Raise(transition);
        return keptRunning;
    }

    internal void Pause()
    {
        lock (_lock)
        {
            if (_paused)
            {
                return;
            }

            _runBase = RunNowUnsynchronized();
            _paused = true;

            // A queued entry stays (lazy); when it comes due OnTimer sees the pause and drops it.
        }
    }

    internal void Resume()
    {
        lock (_lock)
        {
            if (!_paused)
            {
                return;
            }

            _resumedAt = _time.GetTimestamp();
            _paused = false;
            TimeSpan now = _runBase;
            ApplyGraceUnsynchronized(now);
            RescheduleUnsynchronized(now);
        }
    }

    internal WatchdogTimerState Save()
    {
        lock (_lock)
        {
            return new WatchdogTimerState
            {
                RunTime = RunNowUnsynchronized(),
                Armed = _armed,
                Nowayout = _nowayout,
                Expired = _expired,
                PretimeoutFired = _pretimeoutFired,
                Timeout = _timeout,
                Pretimeout = _pretimeout,
                LastKeepalive = _lastKeepalive,
                GraceFloor = _graceFloor,
                Countdown = _countdown,
                NoticePending = _noticePending,
                NoticeTimeLeft = _noticeTimeLeft,
                NoticeOrder = _noticePending ? _noticeOrder : 0,
            };
        }
    }

    // Restores saved state, already validated by the caller against this timer's limits (run time
    // at most MaxRunTime, timeouts within the options, grace floor at most run time + grace); the
    // clock stays paused until Resume, and the grace applies (WDT-DEV-9).
    internal void Restore(in WatchdogTimerState state)
    {
        lock (_lock)
        {
            _runBase = state.RunTime;
            _paused = true;
            _armed = state.Armed;
            _nowayout = state.Nowayout;
            _expired = state.Expired;
            _pretimeoutFired = state.PretimeoutFired;
            _timeout = state.Timeout;
            _pretimeout = state.Pretimeout;
            _lastKeepalive = state.LastKeepalive;
            _graceFloor = state.GraceFloor;
            _countdown = state.Countdown;
            _noticePending = state.NoticePending;
            _noticeCountdown = state.Countdown;
            _noticeTimeLeft = state.NoticeTimeLeft;
            _noticeOrder = state.NoticePending ? (state.NoticeOrder != 0 ? state.NoticeOrder : _order.Next()) : 0;
            _order.AtLeast(_noticeOrder);
            ApplyGraceUnsynchronized(_runBase);

            // Paused until Resume, which reschedules; a queued entry is dropped when it comes due.
        }
    }

    internal WatchdogTimerStatus GetStatus()
    {
        lock (_lock)
        {
            TimeSpan now = RunNowUnsynchronized();
            return new WatchdogTimerStatus(
                _armed,
                _nowayout,
                _expired,
                _paused,
                _timeout,
                _pretimeout,
                _armed ? Max(DeadlineUnsynchronized() - now, TimeSpan.Zero) : null,
                now);
        }
    }

    internal static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    internal static uint ToMilliseconds(TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            return 0;
        }

        long ms = value.Ticks / TimeSpan.TicksPerMillisecond;
        return ms >= uint.MaxValue ? uint.MaxValue : (uint)ms;
    }

    private WatchdogCommandResult ExecuteUnsynchronized(WatchdogCommand command, TimeSpan value, bool pretimeoutNegotiated, TimeSpan now, ref WatchdogTransition transition)
    {
        switch (command)
        {
            case WatchdogCommand.GetStatus:
                return WatchdogCommandResult.Ok;

            case WatchdogCommand.Start:
                if (value != TimeSpan.Zero)
                {
                    if (!InRange(value))
                    {
                        return WatchdogCommandResult.Invalid;
                    }

                    SetTimeoutUnsynchronized(value);
                }

                if (!_armed)
                {
                    ArmUnsynchronized(now);
                    transition = new WatchdogTransition(WatchdogTransitionKind.Armed, now) { Timeout = _timeout };
                }
                else
                {
                    KeepaliveUnsynchronized(now);
                }

                return WatchdogCommandResult.Ok;

            case WatchdogCommand.Stop:
                if (!_armed)
                {
                    return WatchdogCommandResult.Ok;
                }

                if (_nowayout)
                {
                    return WatchdogCommandResult.Denied;
                }

                _armed = false;
                _noticePending = false;
                _countdown++;
                RescheduleUnsynchronized(now);
                transition = new WatchdogTransition(WatchdogTransitionKind.Stopped, now) { StopReason = WatchdogStopReason.DriverStop, Timeout = _timeout };
                return WatchdogCommandResult.Ok;

            case WatchdogCommand.Keepalive:
                if (!_armed)
                {
                    return WatchdogCommandResult.NotArmed;
                }

                KeepaliveUnsynchronized(now);
                return WatchdogCommandResult.Ok;

            case WatchdogCommand.SetTimeout:
                if (!InRange(value))
                {
                    return WatchdogCommandResult.Invalid;
                }

                SetTimeoutUnsynchronized(value);
                if (_armed)
                {
                    KeepaliveUnsynchronized(now);
                }

                return WatchdogCommandResult.Ok;

            case WatchdogCommand.SetPretimeout:
                if (!pretimeoutNegotiated)
                {
                    return WatchdogCommandResult.Unsupported;
                }

                if (value != TimeSpan.Zero && value >= _timeout)
                {
                    return WatchdogCommandResult.Invalid;
                }

                _pretimeout = value;
                _pretimeoutFired = false;
                RescheduleUnsynchronized(now);
                return WatchdogCommandResult.Ok;

            case WatchdogCommand.SetNowayout:
                _nowayout = true;
                return WatchdogCommandResult.Ok;

            default:
                return WatchdogCommandResult.Unsupported;
        }
    }

    private WatchdogControlOutcome OutcomeUnsynchronized(WatchdogCommandResult result, TimeSpan now) =>
        new(result, _armed, _nowayout, _expired, _pretimeoutFired, _timeout, _pretimeout, _armed ? DeadlineUnsynchronized() - now : TimeSpan.Zero);

    private bool InRange(TimeSpan value) => value >= _minTimeout && value <= _maxTimeout;

    private void SetTimeoutUnsynchronized(TimeSpan timeout)
    {
        _timeout = timeout;
        if (_pretimeout >= _timeout)
        {
            _pretimeout = TimeSpan.Zero; // WDT-DEV-16
        }
    }

    private void ArmUnsynchronized(TimeSpan now)
    {
        // The grace floor stays (WDT-DEV-35): arming inside a resume grace window cannot end the
        // new countdown before the window does.
        _armed = true;
        _expired = false;
        KeepaliveUnsynchronized(now);
    }

    private void KeepaliveUnsynchronized(TimeSpan now)
    {
        _lastKeepalive = now;
        _pretimeoutFired = false;
        _noticePending = false; // a notice for an earlier countdown is stale (WDT-DEV-18)
        _countdown++;
        RescheduleUnsynchronized(now);
    }

    // Armed or not: a watchdog the guest arms inside the window gets the grace too (WDT-DEV-35).
    private void ApplyGraceUnsynchronized(TimeSpan now) => _graceFloor = Max(_graceFloor, now + _grace);

    private TimeSpan DeadlineUnsynchronized() => Max(_lastKeepalive + _timeout, _graceFloor);

    private TimeSpan RunNowUnsynchronized() => _paused ? _runBase : _runBase + _time.GetElapsedTime(_resumedAt);

    private void RescheduleUnsynchronized(TimeSpan now)
    {
        if (!_armed || _paused || _disposed)
        {
            // Lazy: a queued entry fires, finds nothing to do and is dropped (OnTimer).
            return;
        }

        TimeSpan next = DeadlineUnsynchronized();
        if (_pretimeout > TimeSpan.Zero && !_pretimeoutFired)
        {
            TimeSpan point = next - _pretimeout;
            next = point < next ? point : next;
        }

        TimeSpan due = next - now;
        if (due <= TimeSpan.Zero)
        {
            due = s_minTimerDue;
        }
        else if (due > s_maxTimerDue)
        {
            due = s_maxTimerDue;
        }

        long at = _timers.TimestampAfter(due);
        long published = DueHint;
        Volatile.Write(ref DueHint, at);
        if (at >= published)
        {
            // The hot path (keepalive): the queued entry is keyed no later than `at`; the queue
            // moves it to the new hint when it reaches it (or fires it and we re-check).
            return;
        }

        // Earlier than what the queue may hold (or nothing queued): move or insert it now.
        _timers.Schedule(this, at);
    }

    private void OnTimer()
    {
        WatchdogTransition pretimeout = default;
        WatchdogTransition expired = default;
        bool notice = false;
        lock (_lock)
        {
            // The queue took the entry out before calling: whatever is queued from here on is new.
            Volatile.Write(ref DueHint, long.MaxValue);
            if (!_armed || _paused || _disposed)
            {
                return;
            }

            TimeSpan now = RunNowUnsynchronized();
            TimeSpan deadline = DeadlineUnsynchronized();
            if (_pretimeout > TimeSpan.Zero && !_pretimeoutFired && now >= deadline - _pretimeout)
            {
                _pretimeoutFired = true;
                TimeSpan left = Max(deadline - now, TimeSpan.Zero);
                pretimeout = new WatchdogTransition(WatchdogTransitionKind.Pretimeout, now) { Timeout = _timeout, Pretimeout = _pretimeout, TimeLeft = left };
                if (_noticesEnabled)
                {
                    _noticePending = true;
                    _noticeCountdown = _countdown;
                    _noticeTimeLeft = left;
                    _noticeOrder = _order.Next();
                    notice = true;
                }
            }

            if (now >= deadline)
            {
                // WDT-DEV-7: disarm and remember EXPIRED; the countdown's pending notice is moot.
                _armed = false;
                _expired = true;
                _noticePending = false;
                notice = false;
                _countdown++;
                expired = new WatchdogTransition(WatchdogTransitionKind.Expired, now) { Timeout = _timeout };
            }

            RescheduleUnsynchronized(now);
        }

        Raise(pretimeout);
        Raise(expired);
        if (notice)
        {
            _listener.OnNoticePending();
        }
    }

    private void Raise(in WatchdogTransition transition)
    {
        Debug.Assert(!_lock.IsHeldByCurrentThread, "transitions are raised outside the lock");
        if (transition.Kind != WatchdogTransitionKind.None)
        {
            _listener.OnTransition(transition);
        }
    }
}
