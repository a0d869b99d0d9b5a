using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Virtio;

/// <summary>
/// A set-up virtqueue on the guest side, as Linux's <c>struct virtqueue</c> and virtio_ring API
/// offer it: add buffers with a token, kick (respecting notification suppression) or notify
/// unconditionally, reap used buffers, wait for them with interrupts, and a callback run from the
/// queue's interrupt.
/// </summary>
/// <remarks>Guest code: every member that touches the ring runs on the vCPU. Counters may be read from any thread.</remarks>
public sealed class GuestVirtqueue
{
    private readonly GuestVirtioDevice _device;
    private readonly GuestTransport _transport;
    private readonly GuestCpu _cpu;
    private readonly object?[] _tokens;
    private bool _callbacksEnabled = true;
    private long _interrupts;
    private long _kicks;
    private long _suppressedKicks;
    private long _completed;
    private ushort _reaped;   // split rings: the driver's last_used_idx, for more_used()

    internal GuestVirtqueue(GuestVirtioDevice device, GuestTransport transport, GuestCpu cpu, int index, IVirtqueueDriver ring, VirtqueueFormat format)
    {
        _device = device;
        _transport = transport;
        _cpu = cpu;
        Index = index;
        Ring = ring;
        Format = format;
        _tokens = new object?[ring.Config.Size];
    }

    /// <summary>The queue index.</summary>
    public int Index { get; }

    /// <summary>The queue size.</summary>
    public ushort Size => Ring.Config.Size;

    /// <summary>Split or packed.</summary>
    public VirtqueueFormat Format { get; }

    /// <summary>The driver-side ring (raw access for tests that build broken rings).</summary>
    public IVirtqueueDriver Ring { get; }

    /// <summary>The device this queue belongs to.</summary>
    public GuestVirtioDevice Device => _device;

    /// <summary>Set when the device returned an id that was not in flight or moved the used index too far (Linux: BAD_RING); the queue is then unusable until the device is reset.</summary>
    public bool IsBroken { get; private set; }

    /// <summary>Called from the queue's interrupt (on the vCPU, interrupts off) after each used-buffer notification; reap in it.</summary>
    public Action<GuestVirtqueue>? Callback { get; set; }

    /// <summary>Used-buffer notifications this queue received.</summary>
    public long InterruptCount => Interlocked.Read(ref _interrupts);

    /// <summary>Available-buffer notifications sent (kicks the device asked for, plus unconditional notifies).</summary>
    public long NotifyCount => Interlocked.Read(ref _kicks);

    /// <summary>Kicks skipped because the device suppressed notifications.</summary>
    public long SuppressedKickCount => Interlocked.Read(ref _suppressedKicks);

    /// <summary>Used buffers reaped.</summary>
    public long CompletedCount => Interlocked.Read(ref _completed);

    /// <summary>Free ring entries.</summary>
    public int FreeCount => Ring.FreeCount;

    /// <summary>Chains in flight (added and not reaped).</summary>
    public int InFlightCount => Ring.InFlightCount;

    /// <summary>Adds a chain (readable buffers first) and remembers <paramref name="token"/> for it (<c>virtqueue_add_sgs</c>).</summary>
    /// <param name="buffers">The chain's buffers.</param>
    /// <param name="token">What <see cref="TryGetUsed(out UsedBuffer, out object?)"/> returns with it.</param>
    /// <returns>False when the ring is full (or broken).</returns>
    public bool TryAdd(ReadOnlySpan<DriverBuffer> buffers, object? token = null)
    {
        if (IsBroken || !Ring.TryAdd(buffers, out ushort id))
        {
            return false;
        }

        _tokens[id] = token;
        return true;
    }

    /// <summary>Adds a chain as one indirect descriptor (needs VIRTIO_F_INDIRECT_DESC and <see cref="VirtioDriverOptions.MaxIndirect"/>).</summary>
    /// <param name="buffers">The chain's buffers.</param>
    /// <param name="token">Token for the chain.</param>
    /// <returns>False when the ring is full (or broken).</returns>
    public bool TryAddIndirect(ReadOnlySpan<DriverBuffer> buffers, object? token = null)
    {
        if (IsBroken || !Ring.TryAddIndirect(buffers, out ushort id))
        {
            return false;
        }

        _tokens[id] = token;
        return true;
    }

    /// <summary>Publishes what was added and notifies the device if it asked to be (<c>virtqueue_kick</c>).</summary>
    /// <returns>Whether a notification was sent.</returns>
    public bool Kick()
    {
        Ring.Publish();
        if (!Ring.NeedsKick())
        {
            Interlocked.Increment(ref _suppressedKicks);
            return false;
        }

        Notify();
        return true;
    }

    /// <summary>Publishes what was added and notifies the device regardless of suppression (<c>virtqueue_notify</c>).</summary>
    public void Notify()
    {
        Ring.Publish();
        Interlocked.Increment(ref _kicks);
        _transport.Notify(Index);
    }

    /// <summary>Reaps one used buffer (<c>virtqueue_get_buf</c>).</summary>
    /// <param name="used">Its id and written length.</param>
    /// <returns>False when nothing was used (or the device corrupted the ring).</returns>
    public bool TryGetUsed(out UsedBuffer used) => TryGetUsed(out used, out _);

    /// <summary>Reaps one used buffer and the token it was added with.</summary>
    /// <param name="used">Its id and written length.</param>
    /// <param name="token">The token given to <see cref="TryAdd"/>.</param>
    /// <returns>False when nothing was used (or the device corrupted the ring).</returns>
    public bool TryGetUsed(out UsedBuffer used, out object? token)
    {
        token = null;
        used = default;
        if (IsBroken)
        {
            return false;
        }

        UsedBufferStatus status = Ring.TryGetUsed(out used);
        if (status == UsedBufferStatus.Ok)
        {
            token = _tokens[used.Id];
            _tokens[used.Id] = null;
            Interlocked.Increment(ref _completed);
            _reaped++;
            if (_callbacksEnabled)
            {
                // Linux writes used_event = last_used_idx after each get_buf so the next completion interrupts.
                Ring.EnableInterrupts();
            }

            return true;
        }

        if (status != UsedBufferStatus.Empty)
        {
            IsBroken = true;
        }

        return false;
    }

    /// <summary>
    /// Reaps one used buffer, sleeping with interrupts until one arrives or <paramref name="timeout"/>
    /// of machine-clock time passes.
    /// </summary>
    /// <param name="timeout">Timeout on the machine clock.</param>
    /// <param name="used">The used buffer.</param>
    /// <param name="token">Its token.</param>
    /// <returns>False on timeout, or when the device signalled DEVICE_NEEDS_RESET (<see cref="GuestVirtioDevice.NeedsReset"/>).</returns>
    public bool WaitForUsed(TimeSpan timeout, out UsedBuffer used, out object? token)
    {
        UsedBuffer found = default;
        object? foundToken = null;
        bool got = false;
        _cpu.WaitUntil(
            () =>
            {
                // Arm the interrupt, then look once more: a completion between the two would not interrupt.
                got = TryGetUsed(out found, out foundToken) || (_callbacksEnabled && Ring.EnableInterrupts() && TryGetUsed(out found, out foundToken));
                return got || _device.NeedsReset;
            },
            timeout);
        used = found;
        token = foundToken;
        return got;
    }

    /// <summary>
    /// One request, start to finish: adds the chain, kicks, and waits for the next used buffer
    /// (use it with one request in flight at a time).
    /// </summary>
    /// <param name="buffers">The chain's buffers, readable ones first.</param>
    /// <param name="timeout">Timeout on the machine clock.</param>
    /// <returns>The used buffer, or null when the ring was full or nothing came back in time.</returns>
    public UsedBuffer? Submit(ReadOnlySpan<DriverBuffer> buffers, TimeSpan timeout)
    {
        if (!TryAdd(buffers))
        {
            return null;
        }

        Kick();
        return WaitForUsed(timeout, out UsedBuffer used, out _) ? used : null;
    }

    /// <summary>Sleeps until this queue takes an interrupt, or <paramref name="timeout"/> of machine-clock time passes.</summary>
    /// <param name="timeout">Timeout on the machine clock.</param>
    /// <returns>False on timeout.</returns>
    public bool WaitForInterrupt(TimeSpan timeout)
    {
        long before = InterruptCount;
        return _cpu.WaitUntil(() => InterruptCount != before, timeout);
    }

    /// <summary>Asks the device not to interrupt for this queue (<c>virtqueue_disable_cb</c>).</summary>
    public void DisableCallbacks()
    {
        _callbacksEnabled = false;
        Ring.DisableInterrupts();
    }

    /// <summary>Re-enables interrupts (<c>virtqueue_enable_cb</c>); true when used buffers are already waiting (reap them).</summary>
    public bool EnableCallbacks()
    {
        _callbacksEnabled = true;
        return Ring.EnableInterrupts();
    }

    // vring_interrupt: called by the transport's interrupt handler for this queue. A shared
    // interrupt (one vector or the line for every queue) is not this queue's unless more_used().
    internal bool OnInterrupt(bool shared)
    {
        if (shared && !HasUsed())
        {
            return false;
        }

        Interlocked.Increment(ref _interrupts);
        Callback?.Invoke(this);
        return true;
    }

    private bool HasUsed()
    {
        if (Format != VirtqueueFormat.Split || IsBroken)
        {
            return true;   // packed: the driver's used position is private to the ring; assume there may be work
        }

        _device.Kernel.Machine.Memory.TryLoadUInt16Acquire(Ring.Config.DeviceArea + SplitRingLayout.UsedIndex, out ushort usedIndex);
        return usedIndex != _reaped;
    }
}
