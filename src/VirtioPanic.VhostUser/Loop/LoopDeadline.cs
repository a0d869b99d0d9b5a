namespace VirtioPanic.VhostUser.Loop;

// A handler's earliest deadline queued on the loop (loop thread only): a deadline is queued only
// when it is earlier than the one already queued, so a handler that moves its deadlines often
// (every message re-arms the I/O deadline) adds no entry per move; a later one is picked up by
// the handler's OnTimer, which re-schedules what is still ahead.
internal struct LoopDeadline
{
    private long _due;   // 0: none queued

    internal void ScheduleAt(VhostUserEventLoop loop, IEventLoopHandler handler, long due)
    {
        if (_due == 0 || due < _due)
        {
            _due = due;
            loop.Schedule(handler, due);
        }
    }

    // From OnTimer: the queued entry at or before now has fired.
    internal void Fired(long now)
    {
        if (now >= _due)
        {
            _due = 0;
        }
    }
}
