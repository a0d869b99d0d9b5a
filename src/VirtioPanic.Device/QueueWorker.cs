using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device;

// Design: exactly one consumer per queue, without locks, and bounded work per turn.
//
// Notify arrives on any vCPU thread, the pretimeout timer on a pool thread. Whoever calls Kick
// first moves _state Idle -> Running and processes the queue on its own thread; a Kick that finds
// it Running marks it Dirty and returns at once, and the runner loops again before going Idle, so
// no notification is lost (the classic "processing flag with a re-check").
//
// Each pass handles at most Budget chains. When a runner has done MaxInlinePasses passes and
// there is still work, it hands the rest to the thread pool, one pass per work item, so a guest
// that floods a queue cannot hold a vCPU thread (or a pool thread) for long, and the remaining
// buffers are processed without another notification (WDT-DEV-33). Memory never grows: the queue
// itself holds the backlog.
//
// Stop (device reset, per-queue reset) clears _enabled with a full fence and waits until the
// queue is Idle: a runner checks _enabled after taking the Running state (also a full fence), so
// once Stop returns nobody touches the queue or guest memory until Start (Dekker ordering).
internal abstract class QueueWorker
{
    private const int Idle = 0;
    private const int Running = 1;
    private const int Dirty = 2;
    private const int Budget = 64;
    private const int MaxInlinePasses = 2;

    private readonly Action<object?> _continuation;
    private int _state;
    private int _enabled;
    private Virtqueue? _queue;
    private IVirtioDeviceContext? _context;

    protected QueueWorker(int queueIndex)
    {
        QueueIndex = queueIndex;
        _continuation = static state => ((QueueWorker)state!).RunFromPool();
    }

    internal int QueueIndex { get; }

    internal bool IsStarted => Volatile.Read(ref _enabled) == 1;

    // Called with the queue quiescent (after Stop, or before the first Start).
    internal void Start(IVirtioDeviceContext context, Virtqueue queue)
    {
        _context = context;
        _queue = queue;
        OnStart();
        Interlocked.Exchange(ref _enabled, 1);
    }

    internal void Stop()
    {
        Interlocked.Exchange(ref _enabled, 0);
        SpinWait spin = default;
        while (Volatile.Read(ref _state) != Idle)
        {
            spin.SpinOnce(sleep1Threshold: 20);
        }

        OnStop();
        _queue = null;
        _context = null;
    }

    internal void Kick()
    {
        while (true)
        {
            int state = Volatile.Read(ref _state);
            if (state == Idle)
            {
                if (Interlocked.CompareExchange(ref _state, Running, Idle) == Idle)
                {
                    Run(MaxInlinePasses);
                    return;
                }
            }
            else if (state == Dirty || Interlocked.CompareExchange(ref _state, Dirty, Running) == Running)
            {
                return;
            }
        }
    }

    // One pass over the queue with at most `budget` chains. Returns true when the budget ran out
    // with work left (notifications stay disabled and the worker continues without a kick).
    protected abstract bool Process(Virtqueue queue, IVirtioDeviceContext context, int budget);

    protected virtual void OnStart()
    {
    }

    protected virtual void OnStop()
    {
    }

    private void RunFromPool() => Run(1);

    private void Run(int passes)
    {
        while (true)
        {
            bool more = false;
            if (Volatile.Read(ref _enabled) == 1)
            {
                Virtqueue? queue = _queue;
                IVirtioDeviceContext? context = _context;
                if (queue is not null && context is not null)
                {
                    more = Process(queue, context, Budget);
                }
            }

            if (more)
            {
                if (--passes > 0)
                {
                    continue;
                }

                // Still Running: later kicks only mark Dirty, the pool item carries on.
                ThreadPool.UnsafeQueueUserWorkItem(_continuation, this, preferLocal: false);
                return;
            }

            if (Interlocked.CompareExchange(ref _state, Idle, Running) == Running)
            {
                return;
            }

            // Dirty: a kick arrived during the pass; look again.
            Volatile.Write(ref _state, Running);
        }
    }
}
