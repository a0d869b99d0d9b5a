using System.Collections.Concurrent;
using System.Diagnostics;
using VirtioPanic.VhostUser.Interop;

namespace VirtioPanic.VhostUser.Loop;

// Design: one epoll loop, on one thread, for every back end in the process.
//
// It serves every back end's listening socket (VhostUserListener: non-blocking accept4), every
// session's socket and every started ring's kick eventfd (VhostUserSession), and the deadlines
// they schedule (set-up, I/O, reconnect grace). Handlers are state machines driven by readiness;
// none blocks, so one front end that stalls mid-message cannot delay another.
//
// Ownership. The registration table, the timer queue and every handler's state belong to the loop
// thread. Other threads reach the loop only through Post (a work item and a write to the wake
// eventfd); starting and stopping a back end is posted, and so is Dispose.
//
// Registrations are level-triggered, except kick eventfds (edge-triggered and never read, see
// VhostUserSession.OnKick). epoll's data word carries a registration token, never the
// descriptor: the low 32 bits index the table, the high 32 bits are the slot's generation (never
// 0, so a token is never 0), which Unregister increments. A handler always unregisters a descriptor (EPOLL_CTL_DEL) before it
// closes it, and an event already returned by epoll_wait for a registration removed meanwhile
// (earlier in the same batch) carries the old generation and is dropped; so a closed descriptor
// whose number the kernel reuses for a new registration can never deliver the old one's events
// to the new owner.
//
// One turn: posted work, epoll_wait (timeout = the earliest deadline), then the batch in two
// passes: first everything but kicks (sockets: messages are read and handled), then kicks. A
// front end that reconfigures a ring and kicks it has its kick served in the new set-up; a
// session that still has unread input remembers its kicks and serves them once that input is
// read. Then due timers. Every handler call is wrapped: an
// exception goes to the handler's OnFault and the loop continues with the others.
internal sealed class VhostUserEventLoop
{
    private const ulong WakeToken = ulong.MaxValue;

    private static readonly Lock s_lock = new();
    private static VhostUserEventLoop? s_shared;

    private readonly int _epoll;
    private readonly int _wake;
    private readonly ConcurrentQueue<(Action<object?> Work, object? State)> _posted = new();

    // 1 while a wake-up is written and not yet consumed. Post: enqueue, then Exchange(1) and write
    // the eventfd only if it was 0. The loop: read the eventfd, Exchange(0) (a full fence), then
    // drain. A Post whose Exchange saw 1 enqueued before the loop's Exchange, so the drain sees it.
    private int _wakePending;

    // Loop thread only.
    private Slot[] _slots = new Slot[64];
    private int _slotsUsed;
    private int _freeSlot = -1;
    private readonly PriorityQueue<IEventLoopHandler, long> _timers = new();
    private readonly LinuxIo.EpollEvent[] _events = new LinuxIo.EpollEvent[LinuxIo.MaxEpollBatch];
    private readonly byte[] _wakeCounter = new byte[sizeof(ulong)];
    private Thread? _thread;

    private VhostUserEventLoop()
    {
        _epoll = LinuxIo.EpollCreate();
        if (_epoll < 0)
        {
            throw new InvalidOperationException($"epoll_create1 failed (errno {-_epoll})");
        }

        _wake = LinuxIo.EventFd(0, LinuxIo.EfdCloexec | LinuxIo.EfdNonblock);
        if (_wake < 0 || LinuxIo.EpollCtl(_epoll, LinuxIo.EpollCtlAdd, _wake, LinuxIo.EpollIn, WakeToken) != 0)
        {
            _ = LinuxIo.Close(_epoll);
            throw new InvalidOperationException("the vhost-user event loop's wake eventfd could not be set up");
        }
    }

    // The process-wide loop, started at first use. It never ends: an idle loop is one thread
    // blocked in epoll_wait.
    internal static VhostUserEventLoop Shared
    {
        get
        {
            lock (s_lock)
            {
                if (s_shared is null)
                {
                    var loop = new VhostUserEventLoop();
                    loop._thread = new Thread(loop.Run) { IsBackground = true, Name = "VirtioPanic vhost-user" };
                    loop._thread.Start();
                    s_shared = loop;
                }

                return s_shared;
            }
        }
    }

    internal bool IsLoopThread => Thread.CurrentThread == _thread;

    // A loop with no thread of its own, driven by the calling thread (RunTurn): the fuzz harness
    // serves one session on its own thread, deterministically. Never the process-wide loop.
    internal static VhostUserEventLoop CreateDriven() => new() { _thread = Thread.CurrentThread };

    // One turn of a driven loop, waiting at most timeoutMilliseconds (or until its next deadline).
    internal void RunTurn(int timeoutMilliseconds)
    {
        AssertLoopThread();
        Turn(timeoutMilliseconds);
    }

    // Runs work on the loop thread, soon. Thread-safe; from the loop thread it runs next turn.
    internal void Post(Action<object?> work, object? state)
    {
        _posted.Enqueue((work, state));
        if (Interlocked.Exchange(ref _wakePending, 1) == 0)
        {
            Span<byte> one = [1, 0, 0, 0, 0, 0, 0, 0];
            _ = LinuxIo.Write(_wake, one);
        }
    }

    // Watches fd for events (level-triggered unless EPOLLET is among them); deferred: handled in
    // the second pass (kicks).
    // Returns 0 and the token, or -errno (EPERM: a descriptor epoll cannot watch, a regular file).
    internal int Register(int fd, uint events, IEventLoopHandler handler, int tag, bool deferred, out ulong token)
    {
        AssertLoopThread();
        int index = _freeSlot;
        if (index >= 0)
        {
            _freeSlot = _slots[index].NextFree;
        }
        else
        {
            if (_slotsUsed == _slots.Length)
            {
                Array.Resize(ref _slots, _slots.Length * 2);
            }

            index = _slotsUsed++;
        }

        ref Slot slot = ref _slots[index];
        if (slot.Generation == 0)
        {
            slot.Generation = 1;   // a token is never 0, so 0 can mean "not registered"
        }

        slot.Handler = handler;
        slot.Tag = tag;
        slot.Deferred = deferred;
        slot.NextFree = -1;
        token = ((ulong)slot.Generation << 32) | (uint)index;
        int result = LinuxIo.EpollCtl(_epoll, LinuxIo.EpollCtlAdd, fd, events, token);
        if (result != 0)
        {
            Free(index);
            token = 0;
        }

        return result;
    }

    // Changes what a registration waits for (EPOLLHUP and EPOLLERR are always reported).
    internal int Modify(ulong token, int fd, uint events)
    {
        AssertLoopThread();
        return LinuxIo.EpollCtl(_epoll, LinuxIo.EpollCtlMod, fd, events, token);
    }

    // Removes the registration; call it before the descriptor is closed. Events of it still in
    // the current batch are dropped (the generation changed).
    internal void Unregister(ulong token, int fd)
    {
        AssertLoopThread();
        int index = (int)(uint)token;
        if ((uint)index >= (uint)_slotsUsed || _slots[index].Generation != (uint)(token >> 32) || _slots[index].Handler is null)
        {
            return;
        }

        _ = LinuxIo.EpollCtl(_epoll, LinuxIo.EpollCtlDel, fd, 0, 0);
        Free(index);
    }

    // Calls handler.OnTimer at or after due (Environment.TickCount64). A handler keeps its own
    // deadlines and re-checks them in OnTimer, so an entry that is no longer wanted is harmless;
    // it schedules only a deadline earlier than the one it already has queued, which bounds the
    // queue to about one entry per handler.
    internal void Schedule(IEventLoopHandler handler, long due)
    {
        AssertLoopThread();
        _timers.Enqueue(handler, due);
    }

    // Drops every queued deadline of a handler that is finished (O(timers), once per connection).
    internal void CancelTimers(IEventLoopHandler handler)
    {
        AssertLoopThread();
        while (_timers.Remove(handler, out _, out _, ReferenceEqualityComparer.Instance))
        {
        }
    }

    [Conditional("DEBUG")]
    private void AssertLoopThread() => Debug.Assert(IsLoopThread, "the event loop's state belongs to its thread");

    private void Free(int index)
    {
        ref Slot slot = ref _slots[index];
        slot.Handler = null;
        slot.Generation = slot.Generation >= uint.MaxValue - 1 ? 1 : slot.Generation + 1;   // never 0, never the wake token's
        slot.NextFree = _freeSlot;
        _freeSlot = index;
    }

    private void Run()
    {
        while (true)
        {
            Turn(-1);
        }
    }

    // Posted work, epoll_wait (at most maxTimeout ms, -1: until the next deadline), the batch, due timers.
    private void Turn(int maxTimeout)
    {
        RunPosted();
        int timeout = NextTimeout();
        if (maxTimeout >= 0 && (timeout < 0 || timeout > maxTimeout))
        {
            timeout = maxTimeout;
        }

        int n = LinuxIo.EpollWait(_epoll, _events, timeout);
        if (n < 0)
        {
            if (n != -LinuxIo.Eintr)
            {
                // EBADF/EFAULT/EINVAL cannot happen with this loop's own descriptor and
                // buffer; if they did, do not spin.
                Thread.Sleep(100);
            }

            return;
        }

        bool anyDeferred = false;
        for (int i = 0; i < n; i++)
        {
            ulong token = _events[i].Data;
            if (token == WakeToken)
            {
                _ = LinuxIo.Read(_wake, _wakeCounter);
                Interlocked.Exchange(ref _wakePending, 0);
                RunPosted();
                continue;
            }

            int index = (int)(uint)token;
            if ((uint)index < (uint)_slotsUsed && _slots[index].Deferred)
            {
                anyDeferred = true;
                continue;
            }

            Dispatch(token, _events[i].Events);
        }

        if (anyDeferred)
        {
            for (int i = 0; i < n; i++)
            {
                ulong token = _events[i].Data;
                int index = (int)(uint)token;
                if (token != WakeToken && (uint)index < (uint)_slotsUsed && _slots[index].Deferred)
                {
                    Dispatch(token, _events[i].Events);
                }
            }
        }

        RunTimers();
    }

    private void Dispatch(ulong token, uint events)
    {
        int index = (int)(uint)token;
        if ((uint)index >= (uint)_slotsUsed)
        {
            return;
        }

        Slot slot = _slots[index];
        if (slot.Handler is null || slot.Generation != (uint)(token >> 32))
        {
            return;   // removed earlier in this batch: a stale event
        }

        try
        {
            slot.Handler.OnReady(events, slot.Tag);
        }
        catch (Exception e)
        {
            Fault(slot.Handler, e);
        }
    }

    private void RunPosted()
    {
        // Only what was posted before this drain began: work posted meanwhile (a session that
        // reads on at the next turn re-posts itself while a front end floods) waits for the next
        // turn, so epoll_wait and every other descriptor still get their turn.
        int budget = _posted.Count;
        while (budget-- > 0 && _posted.TryDequeue(out (Action<object?> Work, object? State) item))
        {
            try
            {
                item.Work(item.State);
            }
            catch (Exception e) when (item.State is IEventLoopHandler handler)
            {
                Fault(handler, e);
            }
            catch (Exception)
            {
                // A posted item of no handler has nobody to report to; the loop goes on.
            }
        }
    }

    private void RunTimers()
    {
        long now = Environment.TickCount64;
        // Bounded: only entries already due, each dequeued before it runs; a handler that
        // schedules again for now or earlier runs at the next turn, not in this one.
        int count = _timers.Count;
        while (count-- > 0 && _timers.TryPeek(out IEventLoopHandler? handler, out long due) && due <= now)
        {
            _ = _timers.Dequeue();
            try
            {
                handler.OnTimer(now);
            }
            catch (Exception e)
            {
                Fault(handler, e);
            }
        }
    }

    private int NextTimeout()
    {
        if (!_timers.TryPeek(out _, out long due))
        {
            return -1;
        }

        long left = due - Environment.TickCount64;
        return left <= 0 ? 0 : (int)Math.Min(left, int.MaxValue);
    }

    private static void Fault(IEventLoopHandler handler, Exception exception)
    {
        try
        {
            handler.OnFault(exception);
        }
        catch (Exception)
        {
            // The handler could not even end itself; nothing more can be done without stopping
            // every other back end, which a bug in one must not do.
        }
    }

    private struct Slot
    {
        public IEventLoopHandler? Handler;
        public int Tag;
        public uint Generation;
        public bool Deferred;
        public int NextFree;
    }
}
