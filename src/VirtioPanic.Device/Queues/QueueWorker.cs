using VirtioPanic.Device.Protocol;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Queues;

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
//
// The pass: Process (sealed here) is the one pop/halt/flush loop of every queue, bounded by the
// budget and free of lost wakeups (disable notifications, drain, flush, re-enable and re-check).
// A subclass says what to do before a round (BeginRound: eventq re-scans its held buffers),
// whether it wants another chain (WantsChain: eventq has a free slot, noticeq a pending notice),
// what a chain means (Handle) and whether to look again after re-enabling (Rearm). A ring error or
// a chain longer than VIRTIO_WDT_CHAIN_MAX halts the queue here, for all three (WDT-DEV-32, -37).
//
// Faults: Process must not throw (guest data comes back as statuses), but a bug, or a transport
// callback that throws (SignalUsedBuffers), must not leave _state Running: Stop would spin forever
// and wedge the device reset, and the exception would reach the vCPU thread that kicked (or end a
// pool thread). Run catches it, marks the worker faulted (the queue is not processed again until
// the next Start) and hands it to the host (IQueueWorkerHost.OnWorkerFault), which sets
// DEVICE_NEEDS_RESET and logs once; then the
// state machine goes Idle as usual.
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

    // Set by Halt on the runner's thread, cleared by Start with the queue quiescent (ordered like
    // _faulted below): a halted queue is not touched again until the next Start (WDT-DEV-32).
    private bool _halted;

    // Set by the runner (which owns the queue while Running) when Process threw; cleared by Start
    // with the queue quiescent. Only ever touched by the thread holding the Running state or by
    // Start/Stop, which are ordered with it by the _enabled/_state fences above: no extra barrier.
    private bool _faulted;
    private Virtqueue? _queue;
    private IVirtioDeviceContext? _context;

    protected QueueWorker(int queueIndex, IQueueWorkerHost host)
    {
        QueueIndex = queueIndex;
        Host = host;
        _continuation = static state => ((QueueWorker)state!).RunFromPool();
    }

    protected IQueueWorkerHost Host { get; }

    internal int QueueIndex { get; }

    internal bool IsStarted => Volatile.Read(ref _enabled) == 1;

    // Called with the queue quiescent (after Stop, or before the first Start).
    internal void Start(IVirtioDeviceContext context, Virtqueue queue)
    {
        _context = context;
        _queue = queue;
        _faulted = false;
        _halted = false;
        OnStart();
        Interlocked.Exchange(ref _enabled, 1);
    }

    // Stops the worker, then gives it one last look at its queue with the queue quiescent
    // (OnSuspend): the device is suspended, not reset, and the rings are still usable. Called
    // under the device lock, like Start and Stop, which is what orders the reads of _queue and
    // _context here with their writes there.
    internal void StopCompletingCommitted()
    {
        Virtqueue? queue = _queue;
        IVirtioDeviceContext? context = _context;
        // After a fault or a ring error the queue is not touched again (WDT-DEV-32).
        bool untouchable = _faulted || _halted;
        Stop();
        if (queue is not null && context is not null && !untouchable)
        {
            OnSuspend(queue, context);
        }
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

    // WDT-DEV-37 (spec §6.9): VIRTIO_WDT_CHAIN_MAX bounds every chain on every queue, readable and
    // writable together, checked before anything is read from it.
    internal static bool IsOversized(in DescriptorChain chain, out ulong length)
    {
        length = (ulong)chain.ReadableLength + chain.WritableLength;
        return length > WatchdogProtocol.MaxChainBytes;
    }

    // One pass over the queue with at most `budget` chains. Returns true when the budget ran out
    // with work left (notifications stay disabled and the worker continues without a kick).
    private bool Process(Virtqueue queue, IVirtioDeviceContext context, int budget)
    {
        if (_halted)
        {
            return false;
        }

        int handled = 0;
        while (true)
        {
            queue.DisableNotification();
            BeginRound(queue);
            while (WantsChain())
            {
                if (handled == budget)
                {
                    Flush(queue, context);
                    return true;
                }

                VirtqueueStatus status = queue.TryPopChain(out DescriptorChain chain);
                if (status == VirtqueueStatus.Empty)
                {
                    break;
                }

                if (status != VirtqueueStatus.Ok)
                {
                    // WDT-DEV-32: the engine stopped the queue; nothing more is popped from it.
                    Halt(queue, context, WatchdogProtocolError.RingError, status.ToString());
                    return false;
                }

                handled++;
                if (IsOversized(chain, out ulong length))
                {
                    // WDT-DEV-37: neither written nor returned; the queue stops with NEEDS_RESET.
                    Halt(queue, context, WatchdogProtocolError.RingError, $"chain of {length} bytes is longer than the {WatchdogProtocol.MaxChainBytes} bytes the device accepts");
                    return false;
                }

                if (!Handle(queue, context, chain))
                {
                    return false;
                }
            }

            Flush(queue, context);
            if (!Rearm(queue))
            {
                return false;
            }
        }
    }

    // Before each round of pops, with notifications disabled.
    protected virtual void BeginRound(Virtqueue queue)
    {
    }

    // Whether to pop another chain in this round.
    protected virtual bool WantsChain() => true;

    // Handles one popped chain (completing it or keeping it). Returns false when it halted the
    // queue (Halt), which ends the pass.
    protected abstract bool Handle(Virtqueue queue, IVirtioDeviceContext context, DescriptorChain chain);

    // After a round, used entries flushed: re-enable notifications; true to look again (buffers
    // arrived meanwhile).
    protected virtual bool Rearm(Virtqueue queue) => queue.EnableNotification();

    // Stops processing the queue until the next Start; what was completed is published first, and
    // the host sets DEVICE_NEEDS_RESET.
    protected void Halt(Virtqueue queue, IVirtioDeviceContext context, WatchdogProtocolError error, string detail)
    {
        _halted = true;
        Flush(queue, context);
        Host.OnQueueStopped(QueueIndex, error, detail);
    }

    // Publishes the used entries added so far and signals the driver when it asked for it.
    protected void Flush(Virtqueue queue, IVirtioDeviceContext context)
    {
        if (queue.FlushUsed())
        {
            context.SignalUsedBuffers(QueueIndex);
        }
    }

    protected virtual void OnStart()
    {
    }

    protected virtual void OnStop()
    {
    }

    // The queue is quiescent and its ring still usable (StopCompletingCommitted). Must not throw.
    protected virtual void OnSuspend(Virtqueue queue, IVirtioDeviceContext context)
    {
    }

    private void RunFromPool() => Run(1);

    private bool RunPass(Virtqueue queue, IVirtioDeviceContext context)
    {
#pragma warning disable CA1031 // any exception: the worker must reach Idle (see Faults above)
        try
        {
            return Process(queue, context, Budget);
        }
        catch (Exception ex)
        {
            _faulted = true;
            try
            {
                Host.OnWorkerFault(QueueIndex, ex);
            }
            catch (Exception)
            {
                // The report failed too; the queue stays stopped and the worker still goes Idle.
            }

            return false;
        }
#pragma warning restore CA1031
    }

    private void Run(int passes)
    {
        while (true)
        {
            bool more = false;
            if (Volatile.Read(ref _enabled) == 1)
            {
                Virtqueue? queue = _queue;
                IVirtioDeviceContext? context = _context;
                if (queue is not null && context is not null && !_faulted)
                {
                    more = RunPass(queue, context);
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
