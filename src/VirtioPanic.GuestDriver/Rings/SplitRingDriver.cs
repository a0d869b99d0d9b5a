using System.Diagnostics;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Rings;

/// <summary>
/// The driver side of a split virtqueue, as a guest kernel's virtio_ring does it: builds direct
/// chains and indirect tables from a free list, publishes available entries, kicks only when the
/// device asks, reaps used entries and re-arms interrupts without losing one.
/// </summary>
/// <remarks>
/// <para>Single producer: one thread adds, publishes and reaps. The device runs concurrently on
/// another thread. Ordering contract (virtio 1.2 §2.7.13, §2.7.14):</para>
/// <list type="bullet">
/// <item>descriptors and avail.ring[] are plain stores; avail.idx is stored with release (<see cref="Publish"/>);</item>
/// <item>after publishing, a full fence precedes reading avail_event / used.flags (<see cref="NeedsKick"/>);</item>
/// <item>used.idx is loaded with acquire before reading used.ring[] (<see cref="TryGetUsed"/>);</item>
/// <item>after writing used_event / clearing NO_INTERRUPT, a full fence precedes re-reading used.idx (<see cref="EnableInterrupts"/>).</item>
/// </list>
/// <para>The raw-access members (<see cref="WriteDescriptor"/>, <see cref="WriteAvailEntry"/>,
/// <see cref="StoreAvailIndex"/>, ...) exist to build deliberately broken rings in tests.</para>
/// </remarks>
public sealed class SplitRingDriver : IVirtqueueDriver
{
    private const ushort NoFree = ushort.MaxValue;

    private readonly GuestMemorySlice _descriptors;
    private readonly GuestMemorySlice _avail;
    private readonly GuestMemorySlice _used;
    private readonly GuestMemorySlice _indirectPool;
    private readonly int _maxIndirect;
    private readonly ushort _mask;
    private readonly bool _eventIndex;

    // Driver-private shadow state (never read back from guest memory, which the device could corrupt).
    private readonly ushort[] _nextFree;
    private readonly ushort[] _chainLength;
    private readonly bool[] _inFlight;
    private readonly bool[] _pinned;      // chains written once and reposted; never on the free list
    private ushort _freeHead;
    private int _freeCount;
    private ushort _availIndex;      // next avail.ring entry to fill (shadow of avail.idx)
    private ushort _kickedIndex;     // avail.idx when the last kick decision was made
    private ushort _lastUsed;        // next used.ring entry to reap
    private int _inFlightCount;

    /// <summary>Creates a driver over areas that already exist in guest memory (zeroed).</summary>
    /// <param name="memory">Guest memory.</param>
    /// <param name="config">Queue size and area addresses.</param>
    /// <param name="eventIndex">Whether VIRTIO_F_EVENT_IDX was negotiated.</param>
    /// <param name="indirectPool">Guest address of <c>size * maxIndirect</c> descriptors for indirect tables, or 0.</param>
    /// <param name="maxIndirect">Entries per indirect table (0 when indirect is not used).</param>
    public SplitRingDriver(GuestMemory memory, VirtqueueConfig config, bool eventIndex, ulong indirectPool = 0, int maxIndirect = 0)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ushort size = config.Size;
        if (size == 0 || size > SplitRingLayout.MaxQueueSize || (size & (size - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(config), "Queue size must be a power of two up to 32768.");
        }

        _descriptors = Slice(memory, config.DescriptorArea, SplitRingLayout.DescriptorTableSize(size));
        _avail = Slice(memory, config.DriverArea, SplitRingLayout.AvailRingSize(size));
        _used = Slice(memory, config.DeviceArea, SplitRingLayout.UsedRingSize(size));
        if (maxIndirect > 0)
        {
            _indirectPool = Slice(memory, indirectPool, (ulong)size * (ulong)maxIndirect * VirtqDescriptor.Size);
        }

        Config = config;
        Memory = memory;
        _maxIndirect = maxIndirect;
        _mask = (ushort)(size - 1);
        _eventIndex = eventIndex;
        _nextFree = new ushort[size];
        _chainLength = new ushort[size];
        _inFlight = new bool[size];
        _pinned = new bool[size];
        for (int i = 0; i < size; i++)
        {
            _nextFree[i] = (ushort)(i + 1 < size ? i + 1 : NoFree);
        }

        _freeHead = 0;
        _freeCount = size;
    }

    /// <summary>Allocates zeroed, aligned ring areas (and an indirect pool) and creates a driver over them.</summary>
    /// <param name="allocator">Guest allocator.</param>
    /// <param name="size">Queue size (power of two).</param>
    /// <param name="eventIndex">Whether VIRTIO_F_EVENT_IDX was negotiated.</param>
    /// <param name="maxIndirect">Entries per indirect table, 0 for none.</param>
    public static SplitRingDriver Allocate(GuestAllocator allocator, ushort size, bool eventIndex, int maxIndirect = 0)
    {
        ArgumentNullException.ThrowIfNull(allocator);
        ulong descriptors = allocator.Allocate(SplitRingLayout.DescriptorTableSize(size), SplitRingLayout.DescriptorTableAlignment);
        ulong avail = allocator.Allocate(SplitRingLayout.AvailRingSize(size), SplitRingLayout.AvailRingAlignment);
        ulong used = allocator.Allocate(SplitRingLayout.UsedRingSize(size), SplitRingLayout.UsedRingAlignment);
        ulong pool = maxIndirect > 0 ? allocator.Allocate((ulong)size * (ulong)maxIndirect * VirtqDescriptor.Size, 16) : 0;
        return new SplitRingDriver(allocator.Memory, new VirtqueueConfig(size, descriptors, avail, used), eventIndex, pool, maxIndirect);
    }

    /// <summary>Queue size and area addresses, as the driver programs them into the transport.</summary>
    public VirtqueueConfig Config { get; }

    /// <summary>The guest memory the rings live in.</summary>
    public GuestMemory Memory { get; }

    /// <summary>Queue size.</summary>
    public ushort Size => Config.Size;

    /// <summary>Free descriptors.</summary>
    public int FreeCount => _freeCount;

    /// <summary>Chains made available and not yet reaped.</summary>
    public int InFlightCount => _inFlightCount;

    /// <summary>The next avail.idx value (what <see cref="Publish"/> will store).</summary>
    public ushort AvailIndex => _availIndex;

    /// <summary>
    /// Adds a chain of direct descriptors (readable buffers first, then writable ones, as the spec
    /// asks; a misbehaving test may pass any order) and queues its head in the available ring.
    /// Nothing is visible to the device until <see cref="Publish"/>.
    /// </summary>
    /// <param name="buffers">The chain's buffers.</param>
    /// <param name="id">The head descriptor index (the id the device will return).</param>
    /// <returns>False when there are not enough free descriptors.</returns>
    public bool TryAdd(ReadOnlySpan<DriverBuffer> buffers, out ushort id)
    {
        id = 0;
        if (buffers.IsEmpty || buffers.Length > _freeCount)
        {
            return false;
        }

        id = _freeHead;
        ushort index = id;
        for (int i = 0; i < buffers.Length; i++)
        {
            bool last = i == buffers.Length - 1;
            ushort next = last ? (ushort)0 : _nextFree[index];
            DescriptorFlags flags = (buffers[i].DeviceWritable ? DescriptorFlags.Write : 0) | (last ? 0 : DescriptorFlags.Next);
            WriteDescriptor(index, new VirtqDescriptor(buffers[i].Address, buffers[i].Length, flags, next));
            if (!last)
            {
                index = next;
            }
        }

        _freeHead = _nextFree[index];
        _freeCount -= buffers.Length;
        _chainLength[id] = (ushort)buffers.Length;
        MakeAvailable(id);
        return true;
    }

    /// <summary>Adds a chain as one descriptor pointing at an indirect table holding <paramref name="buffers"/>.</summary>
    /// <param name="buffers">The chain's buffers (at most the indirect pool's table size).</param>
    /// <param name="id">The descriptor index the device will return.</param>
    /// <returns>False when no descriptor is free.</returns>
    public bool TryAddIndirect(ReadOnlySpan<DriverBuffer> buffers, out ushort id)
    {
        id = 0;
        if (_maxIndirect == 0 || buffers.IsEmpty || buffers.Length > _maxIndirect)
        {
            throw new ArgumentOutOfRangeException(nameof(buffers), "Indirect chains need an indirect pool with room for every buffer.");
        }

        if (_freeCount == 0)
        {
            return false;
        }

        id = _freeHead;
        uint tableOffset = (uint)(id * _maxIndirect * VirtqDescriptor.Size);
        for (int i = 0; i < buffers.Length; i++)
        {
            bool last = i == buffers.Length - 1;
            DescriptorFlags flags = (buffers[i].DeviceWritable ? DescriptorFlags.Write : 0) | (last ? 0 : DescriptorFlags.Next);
            _indirectPool.Write(tableOffset + (uint)(i * VirtqDescriptor.Size), new VirtqDescriptor(buffers[i].Address, buffers[i].Length, flags, (ushort)(i + 1)));
        }

        ulong table = _indirectPool.GuestAddress + tableOffset;
        WriteDescriptor(id, new VirtqDescriptor(table, (uint)(buffers.Length * VirtqDescriptor.Size), DescriptorFlags.Indirect, 0));
        _freeHead = _nextFree[id];
        _freeCount--;
        _chainLength[id] = 1;
        MakeAvailable(id);
        return true;
    }

    /// <summary>
    /// Makes an already-written chain available again by head index, without rewriting its
    /// descriptors (benchmarks and stress tests recycle a prepared table this way).
    /// </summary>
    /// <remarks>
    /// A reposted head is pinned: reaping it does not return its descriptors to the free list, so
    /// use either <see cref="Repost"/> or <see cref="TryAdd"/> for a given set of descriptors, not both.
    /// </remarks>
    /// <param name="head">A head whose descriptors are in place and which is not in flight.</param>
    public void Repost(ushort head)
    {
        Debug.Assert(!_inFlight[head], "reposting a chain that is in flight");
        _pinned[head] = true;
        MakeAvailable(head);
    }

    /// <summary>Publishes every entry added since the last call with one release store of avail.idx.</summary>
    public void Publish() => _avail.StoreUInt16Release(SplitRingLayout.AvailIndex, _availIndex);

    /// <summary>
    /// Whether the device wants an available-buffer notification for what was published since the
    /// last call (virtio 1.2 §2.7.10 driver side: avail_event with EVENT_IDX, else used.flags).
    /// </summary>
    public bool NeedsKick()
    {
        // Full fence (store avail.idx -> load avail_event/used.flags): otherwise the device can
        // re-enable notifications and re-check avail.idx before our store is visible, while we
        // read the old "don't kick" state: neither side acts (§2.7.13 step 6).
        Interlocked.MemoryBarrier();
        ushort old = _kickedIndex;
        ushort now = _availIndex;
        _kickedIndex = now;
        if (_eventIndex)
        {
            ushort availEvent = _used.LoadUInt16Acquire(SplitRingLayout.AvailEventOffset(Size));
            return SplitRingLayout.NeedsEvent(availEvent, now, old);
        }

        return (_used.LoadUInt16Acquire(SplitRingLayout.UsedFlags) & SplitRingLayout.UsedFlagNoNotify) == 0;
    }

    /// <summary>Reaps one used chain and returns its descriptors to the free list.</summary>
    /// <param name="used">The reaped chain's id and written length.</param>
    public UsedBufferStatus TryGetUsed(out UsedBuffer used)
    {
        used = default;
        ushort usedIndex = _used.LoadUInt16Acquire(SplitRingLayout.UsedIndex);
        if (usedIndex == _lastUsed)
        {
            return UsedBufferStatus.Empty;
        }

        if ((ushort)(usedIndex - _lastUsed) > _inFlightCount)
        {
            return UsedBufferStatus.IndexRunaway;
        }

        uint elementOffset = SplitRingLayout.UsedRing + ((uint)(_lastUsed & _mask) * VirtqUsedElement.Size);
        VirtqUsedElement element = _used.Read<VirtqUsedElement>(elementOffset);
        if (element.Id >= Size || !_inFlight[element.Id])
        {
            return UsedBufferStatus.InvalidId;
        }

        ushort head = (ushort)element.Id;
        _lastUsed++;
        _inFlight[head] = false;
        _inFlightCount--;
        if (!_pinned[head])
        {
            Reclaim(head);
        }

        used = new UsedBuffer(head, element.Length);
        return UsedBufferStatus.Ok;
    }

    /// <summary>Asks the device not to interrupt (NO_INTERRUPT without EVENT_IDX; a no-op with it).</summary>
    public void DisableInterrupts()
    {
        if (!_eventIndex)
        {
            _avail.StoreUInt16Release(SplitRingLayout.AvailFlags, SplitRingLayout.AvailFlagNoInterrupt);
        }
    }

    /// <summary>
    /// Asks for an interrupt at the next used buffer and reports whether buffers were used in the
    /// meantime (then reap them before waiting, or an interrupt may never come).
    /// </summary>
    public bool EnableInterrupts()
    {
        if (_eventIndex)
        {
            _avail.StoreUInt16Release(SplitRingLayout.UsedEventOffset(Size), _lastUsed);
        }
        else
        {
            _avail.StoreUInt16Release(SplitRingLayout.AvailFlags, 0);
        }

        // Full fence (store used_event -> load used.idx): §2.7.14 note, the driver's mirror of the
        // device's lost-wakeup race.
        Interlocked.MemoryBarrier();
        return _used.LoadUInt16Acquire(SplitRingLayout.UsedIndex) != _lastUsed;
    }

    /// <summary>Writes a raw descriptor (tests build broken chains with it).</summary>
    /// <param name="index">Descriptor table index.</param>
    /// <param name="descriptor">The descriptor.</param>
    public void WriteDescriptor(ushort index, in VirtqDescriptor descriptor) =>
        _descriptors.Write((uint)index * VirtqDescriptor.Size, descriptor);

    /// <summary>Writes a raw available-ring entry.</summary>
    /// <param name="slot">Ring slot (not masked).</param>
    /// <param name="head">Value to store.</param>
    public void WriteAvailEntry(ushort slot, ushort head) =>
        _avail.WriteUInt16(SplitRingLayout.AvailRing + ((uint)(slot & _mask) * 2), head);

    /// <summary>Stores a raw avail.idx with release semantics (the shadow index is updated too).</summary>
    /// <param name="value">The index to publish.</param>
    public void StoreAvailIndex(ushort value)
    {
        _availIndex = value;
        _avail.StoreUInt16Release(SplitRingLayout.AvailIndex, value);
    }

    /// <summary>Starts the free-running indices at <paramref name="index"/> (to test 16-bit wraparound). Only on a fresh ring.</summary>
    /// <param name="index">Initial avail and used index; the device must be restored to the same position.</param>
    public void StartAt(ushort index)
    {
        if (_inFlightCount != 0)
        {
            throw new InvalidOperationException("Only a ring with nothing in flight can be repositioned.");
        }

        _availIndex = index;
        _kickedIndex = index;
        _lastUsed = index;
        _avail.StoreUInt16Release(SplitRingLayout.AvailIndex, index);
        _used.StoreUInt16Release(SplitRingLayout.UsedIndex, index);
    }

    /// <summary>Writes used_event directly (EVENT_IDX tests).</summary>
    /// <param name="value">The used index the driver wants an interrupt at.</param>
    public void WriteUsedEvent(ushort value) => _avail.StoreUInt16Release(SplitRingLayout.UsedEventOffset(Size), value);

    /// <summary>Writes avail.flags directly.</summary>
    /// <param name="value">Flags value.</param>
    public void WriteAvailFlags(ushort value) => _avail.StoreUInt16Release(SplitRingLayout.AvailFlags, value);

    /// <summary>Reads used.idx as the device last published it.</summary>
    public ushort LoadUsedIndex() => _used.LoadUInt16Acquire(SplitRingLayout.UsedIndex);

    /// <summary>Reads used.flags as the device last wrote it.</summary>
    public ushort LoadUsedFlags() => _used.LoadUInt16Acquire(SplitRingLayout.UsedFlags);

    /// <summary>Reads avail_event as the device last wrote it.</summary>
    public ushort LoadAvailEvent() => _used.LoadUInt16Acquire(SplitRingLayout.AvailEventOffset(Size));

    private void MakeAvailable(ushort head)
    {
        _inFlight[head] = true;
        _inFlightCount++;
        _avail.WriteUInt16(SplitRingLayout.AvailRing + ((uint)(_availIndex & _mask) * 2), head);
        _availIndex++;
    }

    private void Reclaim(ushort head)
    {
        // Walk our own record of the chain, not the guest-visible descriptors.
        int count = _chainLength[head];
        ushort tail = head;
        for (int i = 1; i < count; i++)
        {
            tail = _nextFree[tail];
        }

        _nextFree[tail] = _freeHead;
        _freeHead = head;
        _freeCount += count;
    }

    private static GuestMemorySlice Slice(GuestMemory memory, ulong address, ulong length)
    {
        GuestMemoryStatus status = memory.TryGetSlice(address, length, out GuestMemorySlice slice);
        if (status != GuestMemoryStatus.Ok)
        {
            throw new ArgumentException($"Ring area at 0x{address:x} (+{length}) is not in guest memory: {status}.");
        }

        return slice;
    }
}
