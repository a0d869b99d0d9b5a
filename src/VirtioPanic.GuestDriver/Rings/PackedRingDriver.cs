using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Rings;

/// <summary>
/// The driver side of a packed virtqueue, as a guest kernel's virtio_ring does it (virtio 1.2
/// §2.8.17–§2.8.22): writes chains into consecutive ring slots with the driver's wrap counter,
/// exposes each chain by writing its first descriptor's flags last, kicks when the device's event
/// suppression asks for it, reaps used descriptors and re-arms interrupts without losing one.
/// </summary>
/// <remarks>
/// <para>Single producer: one thread adds, publishes and reaps; the device runs concurrently.
/// Ordering contract: every descriptor of a chain is written before its head's flags, which are
/// stored with release (<see cref="Publish"/>); the device's used flags are loaded with acquire
/// before its id and length; full fences separate publishing from reading the device's event
/// suppression (<see cref="NeedsKick"/>) and arming interrupts from re-checking the ring
/// (<see cref="EnableInterrupts"/>).</para>
/// <para>The raw-access members build broken rings for tests.</para>
/// </remarks>
public sealed class PackedRingDriver : IVirtqueueDriver
{
    private readonly GuestMemorySlice _ring;
    private readonly GuestMemorySlice _driverEvent;
    private readonly GuestMemorySlice _deviceEvent;
    private readonly GuestMemorySlice _indirectPool;
    private readonly int _maxIndirect;
    private readonly bool _eventIndex;
    private readonly ushort _size;

    // Driver-private state; never read back from guest memory.
    private readonly ushort[] _freeIds;
    private readonly ushort[] _slotsOf;
    private readonly bool[] _inFlight;
    private readonly (ushort Slot, ushort Flags)[] _pendingHeads;
    private int _freeIdCount;
    private int _pendingCount;
    private int _freeSlots;
    private ushort _nextAvail;
    private bool _availWrap = true;
    private ushort _nextUsed;
    private bool _usedWrap = true;
    private int _advancedSinceKick;
    private int _inFlightCount;

    /// <summary>Creates a driver over zeroed areas that already exist in guest memory.</summary>
    /// <param name="memory">Guest memory.</param>
    /// <param name="config">Queue size and the three area addresses.</param>
    /// <param name="eventIndex">Whether VIRTIO_F_EVENT_IDX was negotiated (DESC event mode).</param>
    /// <param name="indirectPool">Guest address of <c>size * maxIndirect</c> descriptors for indirect tables, or 0.</param>
    /// <param name="maxIndirect">Entries per indirect table (0 when not used).</param>
    public PackedRingDriver(GuestMemory memory, VirtqueueConfig config, bool eventIndex, ulong indirectPool = 0, int maxIndirect = 0)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ushort size = config.Size;
        if (size == 0 || size > PackedRingLayout.MaxQueueSize)
        {
            throw new ArgumentOutOfRangeException(nameof(config), "Packed queue size must be between 1 and 32768.");
        }

        _ring = Slice(memory, config.DescriptorArea, PackedRingLayout.DescriptorRingSize(size));
        _driverEvent = Slice(memory, config.DriverArea, PackedRingLayout.EventSuppressionSize);
        _deviceEvent = Slice(memory, config.DeviceArea, PackedRingLayout.EventSuppressionSize);
        if (maxIndirect > 0)
        {
            _indirectPool = Slice(memory, indirectPool, (ulong)size * (ulong)maxIndirect * PackedDescriptor.Size);
        }

        Config = config;
        _size = size;
        _eventIndex = eventIndex;
        _maxIndirect = maxIndirect;
        _freeIds = new ushort[size];
        _slotsOf = new ushort[size];
        _inFlight = new bool[size];
        _pendingHeads = new (ushort, ushort)[size];
        for (int i = 0; i < size; i++)
        {
            _freeIds[i] = (ushort)(size - 1 - i);   // pop order 0, 1, 2, ...
        }

        _freeIdCount = size;
        _freeSlots = size;
    }

    /// <summary>Allocates zeroed, aligned ring areas (and an indirect pool) and creates a driver over them.</summary>
    /// <param name="allocator">Guest allocator.</param>
    /// <param name="size">Queue size (1 to 32768).</param>
    /// <param name="eventIndex">Whether VIRTIO_F_EVENT_IDX was negotiated.</param>
    /// <param name="maxIndirect">Entries per indirect table, 0 for none.</param>
    public static PackedRingDriver Allocate(GuestAllocator allocator, ushort size, bool eventIndex, int maxIndirect = 0)
    {
        ArgumentNullException.ThrowIfNull(allocator);
        ulong ring = allocator.Allocate(PackedRingLayout.DescriptorRingSize(size), PackedRingLayout.DescriptorRingAlignment);
        ulong driverEvent = allocator.Allocate(PackedRingLayout.EventSuppressionSize, PackedRingLayout.EventSuppressionAlignment);
        ulong deviceEvent = allocator.Allocate(PackedRingLayout.EventSuppressionSize, PackedRingLayout.EventSuppressionAlignment);
        ulong pool = maxIndirect > 0 ? allocator.Allocate((ulong)size * (ulong)maxIndirect * PackedDescriptor.Size, 16) : 0;
        return new PackedRingDriver(allocator.Memory, new VirtqueueConfig(size, ring, driverEvent, deviceEvent), eventIndex, pool, maxIndirect);
    }

    /// <summary>Queue size and area addresses, as the driver programs them into the transport.</summary>
    public VirtqueueConfig Config { get; }

    /// <summary>Free ring slots.</summary>
    public int FreeCount => _freeSlots;

    /// <summary>Chains made available (or pending publication) and not yet reaped.</summary>
    public int InFlightCount => _inFlightCount;

    /// <summary>The slot the next chain will start at.</summary>
    public ushort NextAvailSlot => _nextAvail;

    /// <summary>The driver's wrap counter for <see cref="NextAvailSlot"/>.</summary>
    public bool AvailWrapCounter => _availWrap;

    /// <summary>
    /// Writes a chain of direct descriptors into consecutive slots. Its head's flags (which make it
    /// visible to the device) are written by <see cref="Publish"/>.
    /// </summary>
    /// <param name="buffers">Readable buffers, then writable ones.</param>
    /// <param name="id">The buffer id the device will return.</param>
    /// <returns>False when there are not enough free slots or ids.</returns>
    public bool TryAdd(ReadOnlySpan<DriverBuffer> buffers, out ushort id)
    {
        id = 0;
        if (buffers.IsEmpty || buffers.Length > _freeSlots || _freeIdCount == 0)
        {
            return false;
        }

        id = _freeIds[--_freeIdCount];
        ushort head = _nextAvail;
        ushort headFlags = 0;
        for (int i = 0; i < buffers.Length; i++)
        {
            bool last = i == buffers.Length - 1;
            DescriptorFlags flags = AvailableBits(_availWrap) | (buffers[i].DeviceWritable ? DescriptorFlags.Write : 0) | (last ? 0 : DescriptorFlags.Next);
            uint offset = (uint)_nextAvail * PackedDescriptor.Size;
            _ring.WriteUInt64(offset, buffers[i].Address);
            _ring.WriteUInt32(offset + 8, buffers[i].Length);
            _ring.WriteUInt16(offset + 12, id);   // Linux writes the id into every descriptor; the device reads the last
            if (i == 0)
            {
                headFlags = (ushort)flags;
            }
            else
            {
                _ring.WriteUInt16(offset + PackedDescriptor.FlagsOffset, (ushort)flags);
            }

            AdvanceAvail(1);
        }

        _slotsOf[id] = (ushort)buffers.Length;
        _freeSlots -= buffers.Length;
        Track(id, head, headFlags);
        return true;
    }

    /// <summary>Adds a chain as one descriptor pointing at an indirect table holding <paramref name="buffers"/>.</summary>
    /// <param name="buffers">The chain's buffers (at most the pool's table size).</param>
    /// <param name="id">The buffer id the device will return.</param>
    /// <returns>False when no slot or id is free.</returns>
    public bool TryAddIndirect(ReadOnlySpan<DriverBuffer> buffers, out ushort id)
    {
        id = 0;
        if (_maxIndirect == 0 || buffers.IsEmpty || buffers.Length > _maxIndirect)
        {
            throw new ArgumentOutOfRangeException(nameof(buffers), "Indirect chains need an indirect pool with room for every buffer.");
        }

        if (_freeSlots == 0 || _freeIdCount == 0)
        {
            return false;
        }

        id = _freeIds[--_freeIdCount];
        uint tableOffset = (uint)(id * _maxIndirect * PackedDescriptor.Size);
        for (int i = 0; i < buffers.Length; i++)
        {
            DescriptorFlags flags = buffers[i].DeviceWritable ? DescriptorFlags.Write : 0;
            _indirectPool.Write(tableOffset + (uint)(i * PackedDescriptor.Size), new PackedDescriptor(buffers[i].Address, buffers[i].Length, 0, flags));
        }

        ushort head = _nextAvail;
        uint offset = (uint)head * PackedDescriptor.Size;
        _ring.WriteUInt64(offset, _indirectPool.GuestAddress + tableOffset);
        _ring.WriteUInt32(offset + 8, (uint)(buffers.Length * PackedDescriptor.Size));
        _ring.WriteUInt16(offset + 12, id);
        ushort headFlags = (ushort)(AvailableBits(_availWrap) | DescriptorFlags.Indirect);
        AdvanceAvail(1);
        _slotsOf[id] = 1;
        _freeSlots--;
        Track(id, head, headFlags);
        return true;
    }

    /// <summary>Makes every chain added since the last call visible, each by a release store of its head's flags.</summary>
    public void Publish()
    {
        for (int i = 0; i < _pendingCount; i++)
        {
            (ushort slot, ushort flags) = _pendingHeads[i];
            _ring.StoreUInt16Release(((uint)slot * PackedDescriptor.Size) + PackedDescriptor.FlagsOffset, flags);
        }

        _pendingCount = 0;
    }

    /// <summary>Whether the device wants an available-buffer notification for what was published since the last call.</summary>
    public bool NeedsKick()
    {
        // Full fence (head flags stores -> load of the device's event suppression), §2.8.21.3.1.
        Interlocked.MemoryBarrier();
        int advanced = _advancedSinceKick;
        _advancedSinceKick = 0;
        ushort flags = _deviceEvent.LoadUInt16Acquire(PackedRingLayout.EventFlags);
        switch (flags & 0x3)
        {
            case PackedRingLayout.EventFlagsDisable:
                return false;
            case PackedRingLayout.EventFlagsDesc when _eventIndex:
                ushort offWrap = _deviceEvent.LoadUInt16Acquire(PackedRingLayout.EventOffWrap);
                return PackedRingLayout.NeedsEvent((ushort)(offWrap & 0x7FFF), (offWrap >> PackedRingLayout.WrapCounterBit) != 0, _nextAvail, _availWrap, Math.Min(advanced, (int)_size), _size);
            default:
                return advanced > 0;
        }
    }

    /// <summary>Reaps one used descriptor and frees its chain's slots and id.</summary>
    /// <param name="used">The buffer id and written length.</param>
    public UsedBufferStatus TryGetUsed(out UsedBuffer used)
    {
        used = default;
        uint offset = (uint)_nextUsed * PackedDescriptor.Size;
        var flags = (DescriptorFlags)_ring.LoadUInt16Acquire(offset + PackedDescriptor.FlagsOffset);
        bool avail = (flags & DescriptorFlags.Available) != 0;
        bool usedBit = (flags & DescriptorFlags.Used) != 0;
        if (avail != _usedWrap || usedBit != _usedWrap)
        {
            return UsedBufferStatus.Empty;
        }

        ushort id = _ring.ReadUInt16(offset + 12);
        uint length = _ring.ReadUInt32(offset + 8);
        if (id >= _size || !_inFlight[id])
        {
            return UsedBufferStatus.InvalidId;
        }

        int slots = _slotsOf[id];
        int next = _nextUsed + slots;
        if (next >= _size)
        {
            next -= _size;
            _usedWrap = !_usedWrap;
        }

        _nextUsed = (ushort)next;
        _inFlight[id] = false;
        _inFlightCount--;
        _freeSlots += slots;
        _freeIds[_freeIdCount++] = id;
        used = new UsedBuffer(id, length);
        return UsedBufferStatus.Ok;
    }

    /// <summary>Asks the device not to interrupt.</summary>
    public void DisableInterrupts() => _driverEvent.StoreUInt16Release(PackedRingLayout.EventFlags, PackedRingLayout.EventFlagsDisable);

    /// <summary>Asks for an interrupt at the next used descriptor and reports whether one is already there.</summary>
    public bool EnableInterrupts()
    {
        if (_eventIndex)
        {
            ushort offWrap = (ushort)(_nextUsed | (_usedWrap ? 1 << PackedRingLayout.WrapCounterBit : 0));
            _driverEvent.StoreUInt16Release(PackedRingLayout.EventOffWrap, offWrap);
            _driverEvent.StoreUInt16Release(PackedRingLayout.EventFlags, PackedRingLayout.EventFlagsDesc);
        }
        else
        {
            _driverEvent.StoreUInt16Release(PackedRingLayout.EventFlags, PackedRingLayout.EventFlagsEnable);
        }

        // Full fence (store event suppression -> load the next used flags).
        Interlocked.MemoryBarrier();
        var flags = (DescriptorFlags)_ring.LoadUInt16Acquire(((uint)_nextUsed * PackedDescriptor.Size) + PackedDescriptor.FlagsOffset);
        bool avail = (flags & DescriptorFlags.Available) != 0;
        bool usedBit = (flags & DescriptorFlags.Used) != 0;
        return avail == _usedWrap && usedBit == _usedWrap;
    }

    /// <summary>Writes a raw descriptor into a slot (tests build broken rings with it).</summary>
    /// <param name="slot">Ring slot.</param>
    /// <param name="descriptor">The descriptor, flags included (stored last, with release).</param>
    public void WriteDescriptor(ushort slot, in PackedDescriptor descriptor)
    {
        uint offset = (uint)slot * PackedDescriptor.Size;
        _ring.WriteUInt64(offset, descriptor.Address);
        _ring.WriteUInt32(offset + 8, descriptor.Length);
        _ring.WriteUInt16(offset + 12, descriptor.Id);
        _ring.StoreUInt16Release(offset + PackedDescriptor.FlagsOffset, (ushort)descriptor.Flags);
    }

    /// <summary>The flag bits that mark a descriptor available for the given driver wrap counter.</summary>
    /// <param name="wrap">The driver's wrap counter.</param>
    public static DescriptorFlags AvailableBits(bool wrap) => wrap ? DescriptorFlags.Available : DescriptorFlags.Used;

    /// <summary>Writes the driver event suppression structure directly.</summary>
    /// <param name="offWrap">Descriptor offset and wrap counter.</param>
    /// <param name="flags">ENABLE, DISABLE or DESC.</param>
    public void WriteDriverEvent(ushort offWrap, ushort flags)
    {
        _driverEvent.StoreUInt16Release(PackedRingLayout.EventOffWrap, offWrap);
        _driverEvent.StoreUInt16Release(PackedRingLayout.EventFlags, flags);
    }

    /// <summary>Reads the device event suppression flags as the device last wrote them.</summary>
    public ushort LoadDeviceEventFlags() => _deviceEvent.LoadUInt16Acquire(PackedRingLayout.EventFlags);

    /// <summary>Reads the device event suppression off_wrap as the device last wrote it.</summary>
    public ushort LoadDeviceEventOffWrap() => _deviceEvent.LoadUInt16Acquire(PackedRingLayout.EventOffWrap);

    private void Track(ushort id, ushort head, ushort headFlags)
    {
        _inFlight[id] = true;
        _inFlightCount++;
        _pendingHeads[_pendingCount++] = (head, headFlags);
    }

    private void AdvanceAvail(int slots)
    {
        _advancedSinceKick += slots;
        int next = _nextAvail + slots;
        if (next >= _size)
        {
            next -= _size;
            _availWrap = !_availWrap;
        }

        _nextAvail = (ushort)next;
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
