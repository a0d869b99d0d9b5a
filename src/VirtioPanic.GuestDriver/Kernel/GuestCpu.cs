using System.Runtime.ExceptionServices;
using VirtioPanic.GuestDriver.Machine;

namespace VirtioPanic.GuestDriver.Kernel;

// Design: one guest vCPU as one dedicated thread, concurrent with the host's threads.
//
// The thread runs three kinds of guest code, in this order of priority:
//   hard interrupts   handlers registered per vector; run whenever the CPU dispatches
//                     (at idle, and inside every wait, unless interrupts are disabled); never nested;
//   deferred work     timer callbacks (GuestCpu timers run on the machine clock); run at top level;
//   host requests     Invoke/InvokeAsync from test code ("system calls"); run at top level, in order.
// A wait (WaitUntil) sleeps until an interrupt, a request or the virtual deadline wakes it, and
// dispatches interrupts while it sleeps, as a kernel task sleeping with interrupts enabled does.
//
// Quiescence: every wake source bumps _signals under _gate; the thread records the value it has
// seen before each scan and sleeps only when nothing new arrived since. The host's
// WaitForQuiescence waits until the thread is asleep with nothing unseen: at that point the guest
// will do nothing until the host (a device, the clock, a request) wakes it. _gate is a monitor
// (Monitor.Wait/PulseAll), which System.Threading.Lock does not offer.

/// <summary>
/// A guest vCPU: a thread that runs guest code (requests from the host, interrupt handlers, timer
/// callbacks) against an <see cref="IGuestMachine"/>, concurrently with the host.
/// </summary>
/// <remarks>
/// Members documented as "vCPU only" must be called on the vCPU thread (from guest code); the
/// others may be called from any thread.
/// </remarks>
public sealed class GuestCpu : IDisposable
{
    private const int FirstDynamicVector = 0x30;
    private const int MaxDispatchPerScan = 1024;
    private const int UnhandledLimit = 100;

    private readonly object _gate = new();
    private readonly IGuestMachine _machine;
    private readonly Thread _thread;
    private readonly Queue<Action> _requests = new();
    private readonly Queue<Action> _deferred = new();
    private readonly List<Func<bool>>?[] _handlers = new List<Func<bool>>?[InterruptController.LastVector + 1];
    private readonly int[] _vectorLine = new int[InterruptController.LastVector + 1];
    private readonly int[] _unhandledRun = new int[InterruptController.LastVector + 1];
    private readonly List<Exception> _faults = [];
    private readonly HashSet<int> _disabledLines = [];
    private long _signals;
    private long _seen;
    private bool _running;
    private volatile bool _stopping;
    private bool _inInterrupt;
    private int _nextVector = FirstDynamicVector;
    private long _interruptsHandled;
    private long _spuriousInterrupts;

    /// <summary>Starts the vCPU thread.</summary>
    /// <param name="machine">The machine it runs on.</param>
    /// <param name="hangTimeout">How long, in real time, a host request or a guest wait may take before it is declared hung.</param>
    /// <param name="name">Thread name.</param>
    public GuestCpu(IGuestMachine machine, TimeSpan hangTimeout, string name = "vcpu0")
    {
        ArgumentNullException.ThrowIfNull(machine);
        _machine = machine;
        HangTimeout = hangTimeout;
        Array.Fill(_vectorLine, -1);
        _machine.Interrupts.SetWakeup(Signal);
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>The machine this vCPU runs on.</summary>
    public IGuestMachine Machine => _machine;

    /// <summary>Real-time limit for a host request or a guest wait; exceeding it means the guest is hung (a test failure, never a timing result).</summary>
    public TimeSpan HangTimeout { get; }

    /// <summary>Whether the current thread is this vCPU.</summary>
    public bool IsCurrent => Thread.CurrentThread == _thread;

    /// <summary>Whether hard interrupts are dispatched (vCPU only; <c>local_irq_disable</c> sets it false).</summary>
    public bool InterruptsEnabled { get; set; } = true;

    /// <summary>Interrupts whose handlers reported them handled.</summary>
    public long InterruptsHandled => Interlocked.Read(ref _interruptsHandled);

    /// <summary>Interrupts no handler claimed.</summary>
    public long SpuriousInterrupts => Interlocked.Read(ref _spuriousInterrupts);

    /// <summary>Exceptions thrown by interrupt handlers and timer callbacks (a guest oops); empty in a healthy run.</summary>
    public Exception[] Faults
    {
        get
        {
            lock (_gate)
            {
                return [.. _faults];
            }
        }
    }

    /// <summary>Runs <paramref name="request"/> on the vCPU and waits for it (at most <see cref="HangTimeout"/>).</summary>
    /// <typeparam name="T">Result type.</typeparam>
    /// <param name="request">Guest code.</param>
    /// <returns>What it returned; its exception is rethrown here.</returns>
    /// <exception cref="TimeoutException">The guest did not finish within <see cref="HangTimeout"/>.</exception>
    public T Invoke<T>(Func<T> request)
    {
        if (IsCurrent)
        {
            return request();
        }

        Task<T> task = InvokeAsync(request);
        return Join(task);
    }

    /// <summary>Runs <paramref name="request"/> on the vCPU and waits for it (at most <see cref="HangTimeout"/>).</summary>
    /// <param name="request">Guest code.</param>
    public void Invoke(Action request)
    {
        ArgumentNullException.ThrowIfNull(request);
        Invoke(() =>
        {
            request();
            return true;
        });
    }

    /// <summary>Queues <paramref name="request"/> to the vCPU; the task completes when it has run.</summary>
    /// <typeparam name="T">Result type.</typeparam>
    /// <param name="request">Guest code.</param>
    public Task<T> InvokeAsync<T>(Func<T> request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var completion = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(_requests, () =>
        {
            try
            {
                completion.SetResult(request());
            }
            catch (Exception e)
            {
                completion.SetException(e);
            }
        });
        return completion.Task;
    }

    /// <summary>Waits (in real time, at most <see cref="HangTimeout"/>) for a task from <see cref="InvokeAsync{T}"/>.</summary>
    /// <typeparam name="T">Result type.</typeparam>
    /// <param name="task">The task.</param>
    public T Join<T>(Task<T> task)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(HangTimeout))
        {
            throw new TimeoutException($"The guest did not complete a request within {HangTimeout} of real time.");
        }

        if (task.Exception is AggregateException aggregate)
        {
            ExceptionDispatchInfo.Capture(aggregate.InnerExceptions[0]).Throw();
        }

        return task.Result;
    }

    /// <summary>
    /// Host side: waits until the vCPU is asleep with nothing left to do (idle, or blocked in a
    /// wait), so the host can change the world (advance the clock) at a well-defined point.
    /// </summary>
    /// <exception cref="TimeoutException">The guest stayed busy for <see cref="HangTimeout"/>.</exception>
    public void WaitForQuiescence()
    {
        if (IsCurrent)
        {
            throw new InvalidOperationException("The vCPU cannot wait for itself to be quiescent.");
        }

        DateTime limit = DateTime.UtcNow + HangTimeout;
        lock (_gate)
        {
            while (_running || _signals != _seen)
            {
                TimeSpan left = limit - DateTime.UtcNow;
                if (left <= TimeSpan.Zero)
                {
                    throw new TimeoutException($"The guest stayed busy for {HangTimeout} of real time.");
                }

                Monitor.Wait(_gate, left);
            }
        }
    }

    /// <summary>A vector nobody uses yet (vCPU only).</summary>
    public int AllocateVector()
    {
        EnsureCurrent();
        if (_nextVector > InterruptController.LastVector)
        {
            throw new InvalidOperationException("Out of interrupt vectors.");
        }

        return _nextVector++;
    }

    /// <summary>Registers a handler for <paramref name="vector"/> (vCPU only). Handlers of a shared vector all run; each returns whether the interrupt was its device's.</summary>
    /// <param name="vector">The vector.</param>
    /// <param name="handler">The handler.</param>
    public void RequestInterrupt(int vector, Func<bool> handler)
    {
        EnsureCurrent();
        ArgumentNullException.ThrowIfNull(handler);
        (_handlers[vector] ??= []).Add(handler);
    }

    /// <summary>Removes a handler registered with <see cref="RequestInterrupt"/> (vCPU only).</summary>
    /// <param name="vector">The vector.</param>
    /// <param name="handler">The handler.</param>
    public void FreeInterrupt(int vector, Func<bool> handler)
    {
        EnsureCurrent();
        _handlers[vector]?.Remove(handler);
    }

    /// <summary>
    /// Routes a level-triggered line to a vector and registers <paramref name="handler"/> on it
    /// (vCPU only). Lines are shared: a second device on the same line gets the same vector.
    /// </summary>
    /// <param name="line">The interrupt line.</param>
    /// <param name="handler">The handler.</param>
    /// <returns>The vector.</returns>
    public int RequestLine(int line, Func<bool> handler)
    {
        EnsureCurrent();
        int vector = Array.IndexOf(_vectorLine, line);
        if (vector < 0)
        {
            vector = AllocateVector();
            _vectorLine[vector] = line;
            RequestInterrupt(vector, handler);
            _machine.Interrupts.RouteLine(line, vector);
        }
        else
        {
            RequestInterrupt(vector, handler);
        }

        return vector;
    }

    /// <summary>Whether the line was masked because its interrupts kept going unhandled ("nobody cared").</summary>
    /// <param name="line">The line.</param>
    public bool IsLineDisabled(int line)
    {
        lock (_gate)
        {
            return _disabledLines.Contains(line);
        }
    }

    /// <summary>
    /// Sleeps until <paramref name="condition"/> holds or <paramref name="timeout"/> of machine-clock
    /// time has passed, dispatching interrupts meanwhile (vCPU only).
    /// </summary>
    /// <param name="condition">Checked after every wakeup; guest code.</param>
    /// <param name="timeout">Timeout on the machine clock (<see cref="Timeout.InfiniteTimeSpan"/> for none).</param>
    /// <returns>True when the condition held, false on timeout.</returns>
    /// <exception cref="TimeoutException">Neither happened within <see cref="HangTimeout"/> of real time (the test is hung).</exception>
    /// <exception cref="OperationCanceledException">The vCPU is being stopped.</exception>
    public bool WaitUntil(Func<bool> condition, TimeSpan timeout)
    {
        EnsureCurrent();
        ArgumentNullException.ThrowIfNull(condition);
        int expired = 0;
        using ITimer? timer = timeout == Timeout.InfiniteTimeSpan ? null : _machine.Clock.CreateTimer(
            _ =>
            {
                Volatile.Write(ref expired, 1);
                Signal();
            },
            null,
            timeout,
            Timeout.InfiniteTimeSpan);
        DateTime limit = DateTime.UtcNow + HangTimeout;
        while (true)
        {
            BeginScan();
            DispatchInterrupts();
            if (condition())
            {
                return true;
            }

            if (Volatile.Read(ref expired) != 0)
            {
                return false;
            }

            if (_stopping)
            {
                throw new OperationCanceledException("The vCPU is stopping.");
            }

            if (!Sleep(limit))
            {
                throw new TimeoutException($"The guest waited {HangTimeout} of real time without an interrupt or reaching its {timeout} deadline on the machine clock.");
            }
        }
    }

    /// <summary>Runs every pending interrupt's handlers now, unless interrupts are disabled or one is already running (vCPU only).</summary>
    public void DispatchInterrupts()
    {
        EnsureCurrent();
        if (!InterruptsEnabled || _inInterrupt)
        {
            return;
        }

        _inInterrupt = true;
        try
        {
            for (int i = 0; i < MaxDispatchPerScan && _machine.Interrupts.TryAcknowledge(out int vector); i++)
            {
                bool handled = false;
                if (_handlers[vector] is List<Func<bool>> handlers)
                {
                    foreach (Func<bool> handler in handlers.ToArray())
                    {
                        handled |= RunGuarded(handler);
                    }
                }

                Account(vector, handled);
                _machine.Interrupts.EndOfInterrupt(vector);
            }
        }
        finally
        {
            _inInterrupt = false;
        }
    }

    /// <summary>
    /// Starts a timer on the machine clock whose callback runs on this vCPU as deferred work (the
    /// kernel's timer and workqueue, in one).
    /// </summary>
    /// <param name="callback">Guest code.</param>
    /// <param name="dueTime">First expiry.</param>
    /// <param name="period">Period, or <see cref="Timeout.InfiniteTimeSpan"/> for a one-shot.</param>
    /// <returns>The timer; dispose it to cancel.</returns>
    public ITimer StartTimer(Action callback, TimeSpan dueTime, TimeSpan period)
    {
        ArgumentNullException.ThrowIfNull(callback);
        return _machine.Clock.CreateTimer(_ => Post(_deferred, callback), null, dueTime, period);
    }

    /// <summary>Stops the vCPU thread (after the request it is running) and joins it.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            _signals++;
            Monitor.PulseAll(_gate);
        }

        _machine.Interrupts.SetWakeup(null);
        if (!IsCurrent && !_thread.Join(HangTimeout + TimeSpan.FromSeconds(1)))
        {
            throw new TimeoutException("The vCPU thread did not stop.");
        }
    }

    private void Account(int vector, bool handled)
    {
        if (handled)
        {
            Interlocked.Increment(ref _interruptsHandled);
            _unhandledRun[vector] = 0;
            return;
        }

        Interlocked.Increment(ref _spuriousInterrupts);
        int line = _vectorLine[vector];
        if (line >= 0 && ++_unhandledRun[vector] >= UnhandledLimit)
        {
            // Linux's note_interrupt: a level line that nobody handles would storm forever; mask it.
            _machine.Interrupts.RouteLine(line, -1);
            lock (_gate)
            {
                _disabledLines.Add(line);
            }
        }
    }

    private void EnsureCurrent()
    {
        if (!IsCurrent)
        {
            throw new InvalidOperationException("This member runs guest code and must be called on the vCPU thread (use Invoke).");
        }
    }

    private void Signal()
    {
        lock (_gate)
        {
            _signals++;
            Monitor.PulseAll(_gate);
        }
    }

    private void Post(Queue<Action> queue, Action item)
    {
        lock (_gate)
        {
            queue.Enqueue(item);
            _signals++;
            Monitor.PulseAll(_gate);
        }
    }

    private void BeginScan()
    {
        lock (_gate)
        {
            _seen = _signals;
            _running = true;
        }
    }

    // Sleeps until something new is signalled; false when the real-time limit passed first.
    private bool Sleep(DateTime limit)
    {
        lock (_gate)
        {
            if (_signals != _seen || _stopping)
            {
                return true;
            }

            _running = false;
            Monitor.PulseAll(_gate);
            while (_signals == _seen && !_stopping)
            {
                TimeSpan left = limit - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !Monitor.Wait(_gate, left))
                {
                    _running = true;
                    return _signals != _seen;
                }
            }

            _running = true;
            return true;
        }
    }

    private bool RunGuarded(Func<bool> code)
    {
        try
        {
            return code();
        }
        catch (Exception e)
        {
            lock (_gate)
            {
                _faults.Add(e);
            }

            return true;
        }
    }

    private void Run()
    {
        while (true)
        {
            BeginScan();
            DispatchInterrupts();
            Action? work = null;
            lock (_gate)
            {
                if (_deferred.Count > 0)
                {
                    work = _deferred.Dequeue();
                }
                else if (_requests.Count > 0)
                {
                    work = _requests.Dequeue();
                }
                else if (_stopping)
                {
                    _running = false;
                    Monitor.PulseAll(_gate);
                    return;
                }
            }

            if (work is not null)
            {
                RunGuarded(() =>
                {
                    work();
                    return true;
                });
                continue;
            }

            lock (_gate)
            {
                if (_signals != _seen || _stopping)
                {
                    continue;
                }

                _running = false;
                Monitor.PulseAll(_gate);
                while (_signals == _seen && !_stopping)
                {
                    Monitor.Wait(_gate);
                }
            }
        }
    }
}
