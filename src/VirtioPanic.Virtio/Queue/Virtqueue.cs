using System.Runtime.CompilerServices;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// The device side of one virtqueue, whatever its ring format. Device code pops validated
/// <see cref="DescriptorChain"/>s, completes them with <see cref="AddUsed"/>, and publishes them
/// with <see cref="FlushUsed"/>, which also says whether the driver wants an interrupt.
/// </summary>
/// <remarks>
/// <para>
/// Single consumer: one thread at a time may call the popping and completing members. The guest
/// writes the rings concurrently; no locks are taken. Errors in guest data come back as
/// <see cref="VirtqueueStatus"/> values, never as exceptions, and stop the queue until it is reset
/// or re-activated.
/// </para>
/// <para>
/// The format is chosen at activation (VIRTIO_F_RING_PACKED). Dispatch is a predictable branch on a
/// field, not a virtual call, and nothing allocates after construction.
/// </para>
/// <example>
/// A device's processing loop, with a bounded budget and no lost wakeup:
/// <code>
/// do
/// {
///     queue.DisableNotification();
///     for (int i = 0; i &lt; budget &amp;&amp; queue.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok; i++)
///     {
///         uint written = Handle(chain);
///         queue.AddUsed(chain.Token, written);
///     }
///     if (queue.FlushUsed()) { interrupt(); }
/// }
/// while (queue.EnableNotification());
/// </code>
/// </example>
/// </remarks>
public sealed class Virtqueue
{
    private readonly SplitVirtqueue _split;
    private PackedVirtqueue? _packed;   // created at the first packed activation
    private VirtqueueFormat _format;

    /// <summary>Creates an inactive queue.</summary>
    /// <param name="maxSize">The largest size the device offers (queue_size after reset); a power of two up to 32768.</param>
    /// <param name="maxChainLength">
    /// The most buffers one chain may have, direct and indirect together; longer chains are
    /// rejected with <see cref="VirtqueueStatus.ChainTooLong"/> (virtio 1.2 §2.7.4.1 lets a device
    /// limit chain length). Defaults to <paramref name="maxSize"/>. Chains are translated into a
    /// scratch array of 24 bytes per entry: for the split format it starts at 8 entries and grows
    /// (doubling, on the thread that pops) up to this bound when a longer chain arrives; for the
    /// packed format it is allocated at this bound when that format is first activated.
    /// </param>
    public Virtqueue(ushort maxSize, int maxChainLength = 0)
    {
        if (maxSize == 0 || maxSize > SplitRingLayout.MaxQueueSize || (maxSize & (maxSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(maxSize), "The maximum queue size must be a power of two between 1 and 32768.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(maxChainLength);

        MaxSize = maxSize;
        MaxChainLength = maxChainLength == 0 ? maxSize : maxChainLength;
        _split = new SplitVirtqueue(maxSize, MaxChainLength);
    }

    /// <summary>The largest size a driver may choose.</summary>
    public ushort MaxSize { get; }

    /// <summary>The most buffers one chain may carry.</summary>
    public int MaxChainLength { get; }

    /// <summary>The ring format in use (meaningful while <see cref="IsReady"/>).</summary>
    public VirtqueueFormat Format => _format;

    /// <summary>Whether the queue is activated.</summary>
    public bool IsReady => _format == VirtqueueFormat.Split ? _split.IsReady : _packed!.IsReady;

    /// <summary>The size the driver chose (0 when not activated).</summary>
    public ushort Size => _format == VirtqueueFormat.Split ? _split.Size : _packed!.Size;

    /// <summary><see cref="VirtqueueStatus.Ok"/> while healthy; otherwise the error that stopped the queue.</summary>
    public VirtqueueStatus Status => _format == VirtqueueFormat.Split ? _split.Status : _packed!.Status;

    /// <summary>The configuration the queue was activated with.</summary>
    public VirtqueueConfig Config => _format == VirtqueueFormat.Split ? _split.Config : _packed!.Config;

    /// <summary>
    /// Validates the driver's configuration once (size, alignment, every area wholly inside guest
    /// memory) and caches views of the areas for the hot path.
    /// </summary>
    /// <param name="memory">The guest's memory.</param>
    /// <param name="config">What the driver programmed.</param>
    /// <param name="features">Negotiated ring features; <see cref="VirtqueueFeatures.Packed"/> selects the packed format.</param>
    /// <returns><see cref="VirtqueueStatus.Ok"/>, or the configuration error (the queue then stays inactive).</returns>
    public VirtqueueStatus Activate(GuestMemory memory, in VirtqueueConfig config, VirtqueueFeatures features)
    {
        ArgumentNullException.ThrowIfNull(memory);
        Reset();
        if ((features & VirtqueueFeatures.Packed) != 0)
        {
            _format = VirtqueueFormat.Packed;
            _packed ??= new PackedVirtqueue(MaxSize, MaxChainLength);
            return _packed.Activate(memory, config, features);
        }

        _format = VirtqueueFormat.Split;
        return _split.Activate(memory, config, features);
    }

    /// <summary>Returns the queue to its inactive power-on state; it will not touch guest memory again until re-activated.</summary>
    public void Reset()
    {
        _split.Reset();
        _packed?.Reset();
        _format = VirtqueueFormat.Split;
    }

    /// <summary>Pops the next available chain, fully validated.</summary>
    /// <param name="chain">The chain when the result is <see cref="VirtqueueStatus.Ok"/>.</param>
    /// <returns><see cref="VirtqueueStatus.Ok"/>, <see cref="VirtqueueStatus.Empty"/>, or an error that stopped the queue.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public VirtqueueStatus TryPopChain(out DescriptorChain chain) =>
        _format == VirtqueueFormat.Split ? _split.TryPopChain(out chain) : _packed!.TryPopChain(out chain);

    /// <summary>
    /// Pops and handles up to <paramref name="maxChains"/> chains in one call (bounded work): each
    /// chain is validated, passed to <paramref name="handler"/>, and completed when the handler says
    /// so. Used entries are not yet visible to the driver: call <see cref="FlushUsed"/> after.
    /// This is the fastest way through a queue: the format is dispatched once per call, and the
    /// handler, a struct, is called directly.
    /// </summary>
    /// <typeparam name="THandler">The device's per-chain logic, a struct.</typeparam>
    /// <param name="handler">The handler, passed by reference so it can accumulate state.</param>
    /// <param name="maxChains">The most chains to handle in this call.</param>
    /// <param name="processed">How many chains were handed to the handler.</param>
    /// <returns>
    /// <see cref="VirtqueueStatus.Ok"/> when the budget ran out, <see cref="VirtqueueStatus.Empty"/> when every
    /// chain published as of the call's load of the available index was handled, or the error that stopped
    /// the queue. A call loads that index at most once (and not at all while chains it saw earlier are left):
    /// chains published meanwhile are found by <see cref="EnableNotification"/> or <see cref="EndRound"/>,
    /// which re-check the ring before the device may sleep.
    /// </returns>
    public VirtqueueStatus ProcessChains<THandler>(ref THandler handler, int maxChains, out int processed)
        where THandler : struct, IDescriptorChainHandler, allows ref struct =>
        _format == VirtqueueFormat.Split
            ? _split.ProcessChains(ref handler, maxChains, out processed)
            : _packed!.ProcessChains(ref handler, maxChains, out processed);

    /// <summary>Records a completed chain in the used ring (not yet visible to the driver: see <see cref="FlushUsed"/>).</summary>
    /// <param name="token">The chain's <see cref="DescriptorChain.Token"/>.</param>
    /// <param name="writtenLength">Bytes the device wrote into the chain's writable buffers.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public VirtqueueStatus AddUsed(ChainToken token, uint writtenLength) =>
        _format == VirtqueueFormat.Split ? _split.AddUsed(token, writtenLength) : _packed!.AddUsed(token, writtenLength);

    /// <summary>
    /// Publishes every used entry added since the last flush (one release store) and decides,
    /// per the driver's suppression settings, whether it wants a used-buffer notification.
    /// </summary>
    /// <returns>Whether to interrupt the driver.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool FlushUsed() => _format == VirtqueueFormat.Split ? _split.FlushUsed() : _packed!.FlushUsed();

    /// <summary>
    /// Asks the driver to notify on new buffers, then re-checks the ring. When this returns
    /// <c>true</c> buffers arrived while notifications were off: process them before sleeping.
    /// </summary>
    public bool EnableNotification() => _format == VirtqueueFormat.Split ? _split.EnableNotification() : _packed!.EnableNotification();

    /// <summary>
    /// Ends a processing round in one call: <see cref="FlushUsed"/> then <see cref="EnableNotification"/>,
    /// with the one full memory fence the pair needs between its stores and its loads instead of one each.
    /// </summary>
    /// <param name="notify">Whether to interrupt the driver (what <see cref="FlushUsed"/> returns).</param>
    /// <returns>Whether buffers arrived while notifications were off (what <see cref="EnableNotification"/> returns): process them, and end that round too, before sleeping.</returns>
    /// <example>
    /// <code>
    /// do
    /// {
    ///     queue.DisableNotification();
    ///     queue.ProcessChains(ref handler, budget, out _);
    ///     more = queue.EndRound(out bool notify);
    ///     if (notify) { interrupt(); }
    /// }
    /// while (more);
    /// </code>
    /// </example>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool EndRound(out bool notify)
    {
        if (_format == VirtqueueFormat.Split)
        {
            return _split.EndRound(out notify);
        }

        notify = _packed!.FlushUsed();
        return _packed.EnableNotification();
    }

    /// <summary>Tells the driver that notifications are not needed while the device is polling.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void DisableNotification()
    {
        if (_format == VirtqueueFormat.Split)
        {
            _split.DisableNotification();
        }
        else
        {
            _packed!.DisableNotification();
        }
    }

    /// <summary>Captures the queue's state for a snapshot, publishing any pending used entries first.</summary>
    public VirtqueueState SaveState() => _format == VirtqueueFormat.Split ? _split.SaveState() : _packed!.SaveState();

    /// <summary>Restores a saved state, validating it like a fresh activation.</summary>
    /// <param name="memory">The guest's memory after restore.</param>
    /// <param name="state">The saved state (untrusted).</param>
    public VirtqueueStatus RestoreState(GuestMemory memory, in VirtqueueState state)
    {
        ArgumentNullException.ThrowIfNull(memory);
        Reset();
        if (state.Format == VirtqueueFormat.Packed)
        {
            _format = VirtqueueFormat.Packed;
            _packed ??= new PackedVirtqueue(MaxSize, MaxChainLength);
            return _packed.RestoreState(memory, state);
        }

        return _split.RestoreState(memory, state);
    }

    /// <summary>
    /// After <see cref="RestoreState"/>, re-registers a chain the device still holds (it saved the
    /// token), so that completing it is accepted. Needed for packed rings, whose in-flight buffer
    /// ids are not part of <see cref="VirtqueueState"/>; harmless for split rings.
    /// </summary>
    /// <param name="token">A token the device saved with its own state.</param>
    public void RestoreInFlight(ChainToken token)
    {
        if (_format == VirtqueueFormat.Packed)
        {
            _packed!.MarkInFlight(token.Id);
        }
    }
}
