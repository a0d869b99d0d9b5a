using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Queue;

// Design: the device side of one packed virtqueue (virtio 1.2 §2.8), single consumer.
//
// One ring of descriptors is shared by both sides; ownership of a slot is told by its AVAIL and
// USED flag bits against each side's wrap counter (§2.8.1). Ordering contract of the shared state:
//
//   desc[i].flags (available) driver stores with release after filling the chain (the chain's
//                 first descriptor last, §2.8.6); device loads it with acquire, which orders the
//                 reads of the rest of that descriptor and of the chain's later descriptors.
//   desc[i].id/len (used)     device writes with plain stores, then
//   desc[i].flags (used)      device stores with release, so the driver's acquire load of the
//                             flags sees id, len and the bytes written into the buffers (§2.8.21).
//   driver event suppression  driver writes; device reads after the full fence that follows its
//                             last used-descriptor store.
//   device event suppression  device writes off_wrap, then flags (release); then a full fence
//                             before re-checking the next descriptor.
//
// Everything else is consumer-private. Each descriptor is read once: its flags by the acquire load,
// the other fields in one copy taken after it; the copy is validated, never re-read. Loops are
// bounded by the queue size (chain walk), the table size (indirect) and the scratch capacity.
internal sealed class PackedVirtqueue
{
    private const DescriptorFlags KnownFlags = DescriptorFlags.Next | DescriptorFlags.Write | DescriptorFlags.Indirect | DescriptorFlags.Available | DescriptorFlags.Used;
    private const DescriptorFlags BothBits = DescriptorFlags.Available | DescriptorFlags.Used;

    private readonly GuestMemorySlice[] _scratch;
    private readonly ushort _maxSize;
    private readonly bool[] _inFlight;   // buffer ids popped and not yet used

    // Configuration, validated at activation.
    private GuestMemory? _memory;
    private GuestMemorySlice _ring;
    private GuestMemorySlice _driverEvent;
    private GuestMemorySlice _deviceEvent;
    private VirtqueueConfig _config;
    private ushort _size;
    private bool _eventIndex;
    private bool _indirect;

    // Consumer-private progress.
    private ushort _nextAvail;
    private bool _availWrap = true;
    private ushort _nextUsed;
    private bool _usedWrap = true;
    private int _outstandingSlots;       // slots popped and not yet returned as used
    private int _advancedSinceDecision;  // used slots written since the last notification decision
    private int _unpublished;            // used descriptors written since the last flush
    private bool _signalledValid;
    private VirtqueueStatus _status = VirtqueueStatus.NotReady;

    // The guest's first region, copied at activation (see SplitVirtqueue._regionBase).
    private ulong _regionBase;
    private ulong _regionSize;
    private nint _regionHost;

    internal PackedVirtqueue(ushort maxSize, int maxChainLength)
    {
        Debug.Assert(maxSize is > 0 and <= PackedRingLayout.MaxQueueSize);
        _maxSize = maxSize;
        _scratch = new GuestMemorySlice[maxChainLength];
        _inFlight = new bool[maxSize];
    }

    internal ushort Size => _size;

    internal VirtqueueStatus Status => _status;

    internal bool IsReady => _memory is not null;

    internal VirtqueueConfig Config => _config;

    internal VirtqueueStatus Activate(GuestMemory memory, in VirtqueueConfig config, VirtqueueFeatures features)
    {
        Reset();
        if ((features & VirtqueueFeatures.InOrder) != 0)
        {
            // IN_ORDER is only offered when implemented completely; this engine does not.
            return VirtqueueStatus.UnsupportedFeature;
        }

        ushort size = config.Size;
        if (size == 0 || size > _maxSize)
        {
            return VirtqueueStatus.InvalidSize;
        }

        if (config.DescriptorArea % PackedRingLayout.DescriptorRingAlignment != 0)
        {
            return VirtqueueStatus.MisalignedDescriptorArea;
        }

        if (config.DriverArea % PackedRingLayout.EventSuppressionAlignment != 0)
        {
            return VirtqueueStatus.MisalignedDriverArea;
        }

        if (config.DeviceArea % PackedRingLayout.EventSuppressionAlignment != 0)
        {
            return VirtqueueStatus.MisalignedDeviceArea;
        }

        if (memory.TryGetSlice(config.DescriptorArea, PackedRingLayout.DescriptorRingSize(size), out GuestMemorySlice ring) != GuestMemoryStatus.Ok)
        {
            return VirtqueueStatus.DescriptorAreaOutOfRange;
        }

        if (memory.TryGetSlice(config.DriverArea, PackedRingLayout.EventSuppressionSize, out GuestMemorySlice driverEvent) != GuestMemoryStatus.Ok)
        {
            return VirtqueueStatus.DriverAreaOutOfRange;
        }

        if (memory.TryGetSlice(config.DeviceArea, PackedRingLayout.EventSuppressionSize, out GuestMemorySlice deviceEvent) != GuestMemoryStatus.Ok)
        {
            return VirtqueueStatus.DeviceAreaOutOfRange;
        }

        _memory = memory;
        GuestMemoryRegion first = memory.Regions[0];
        _regionBase = first.GuestAddress;
        _regionSize = first.Size;
        _regionHost = first.HostAddress;
        _config = config;
        _ring = ring;
        _driverEvent = driverEvent;
        _deviceEvent = deviceEvent;
        _size = size;
        _eventIndex = (features & VirtqueueFeatures.EventIndex) != 0;
        _indirect = (features & VirtqueueFeatures.IndirectDescriptors) != 0;
        _status = VirtqueueStatus.Ok;
        return VirtqueueStatus.Ok;
    }

    internal void Reset()
    {
        _memory = null;
        _regionBase = 0;
        _regionSize = 0;
        _regionHost = 0;
        _config = default;
        _ring = default;
        _driverEvent = default;
        _deviceEvent = default;
        _size = 0;
        _eventIndex = false;
        _indirect = false;
        _nextAvail = 0;
        _availWrap = true;
        _nextUsed = 0;
        _usedWrap = true;
        _outstandingSlots = 0;
        _advancedSinceDecision = 0;
        _unpublished = 0;
        _signalledValid = false;
        _status = VirtqueueStatus.NotReady;
        Array.Clear(_scratch);
        Array.Clear(_inFlight);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal VirtqueueStatus TryPopChain(out DescriptorChain chain)
    {
        chain = default;
        if (_status != VirtqueueStatus.Ok)
        {
            return _status;
        }

        // Acquire: the flags say the slot is ours; everything else of the chain is read after.
        uint slotOffset = (uint)_nextAvail * PackedDescriptor.Size;
        DescriptorFlags flags = (DescriptorFlags)_ring.LoadUInt16Acquire(slotOffset + PackedDescriptor.FlagsOffset);
        if (!IsAvailable(flags, _availWrap))
        {
            return VirtqueueStatus.Empty;
        }

        PackedDescriptor descriptor = _ring.Read<PackedDescriptor>(slotOffset);

        // Fast path: one direct descriptor.
        if ((flags & ~(BothBits | DescriptorFlags.Write)) == 0)
        {
            uint length = descriptor.Length;
            ushort id = descriptor.Id;
            if (length == 0)
            {
                return Fail(VirtqueueStatus.ZeroLengthBuffer);
            }

            if (id >= _size || _inFlight[id])
            {
                return Fail(VirtqueueStatus.InvalidBufferId);
            }

            if (_outstandingSlots == _size)
            {
                return Fail(VirtqueueStatus.AvailIndexRunaway);
            }

            // Translate straight into the scratch slot (see SplitVirtqueue: avoids a store-forwarding stall).
            if (_memory!.TryGetSlice(descriptor.Address, length, out _scratch[0]) != GuestMemoryStatus.Ok)
            {
                return Fail(VirtqueueStatus.BufferOutOfRange);
            }

            _inFlight[id] = true;
            _outstandingSlots++;
            Advance(ref _nextAvail, ref _availWrap, 1);
            bool writable = (flags & DescriptorFlags.Write) != 0;
            chain = DescriptorChain.OneBuffer(new ChainToken(id, 1), _scratch, writable, length);
            return VirtqueueStatus.Ok;
        }

        return TryPopChainSlow(flags, descriptor, out chain);
    }

    internal VirtqueueStatus ProcessChains<THandler>(ref THandler handler, int maxChains, out int processed)
        where THandler : struct, IDescriptorChainHandler, allows ref struct
    {
        // Runs of plain one-descriptor chains go through ProcessDirect, a loop without calls;
        // whatever it stops at is popped by TryPopChain (every check, the typed error, Empty) and
        // completed by AddUsed. After a chain ProcessDirect refused for its shape, the next one
        // goes straight to TryPopChain too, so a run of longer chains does not pay for setting
        // up ProcessDirect's views per chain.
        processed = 0;
        VirtqueueStatus status = VirtqueueStatus.Ok;
        bool direct = true;
        while (processed < maxChains)
        {
            if (direct)
            {
                processed += ProcessDirect(ref handler, maxChains - processed);
                if (processed == maxChains)
                {
                    break;
                }
            }

            status = TryPopChain(out DescriptorChain chain);
            if (status != VirtqueueStatus.Ok)
            {
                break;
            }

            processed++;
            direct = chain.Token.SlotCount == 1 && chain.Buffers.Length == 1;
            if (handler.Handle(in chain, out uint written))
            {
                AddUsed(chain.Token, written);
            }
        }

        return status;
    }

    // Handles available one-descriptor direct chains, at most `budget`, and stops before the
    // first slot that is not available or holds anything else or fails a check (TryPopChain then
    // pops it, with its typed error). Every check here is one TryPopChain makes, in the same
    // order of reads: the flags with acquire, then one copy of the descriptor. The ring becomes
    // spans once per call (Activate validated the area), and a chain the handler completes is
    // written back in place as AddUsed does (id and len, then the flags with release); AddUsed's
    // own checks hold by construction there (the id was just popped and is in flight).
    private int ProcessDirect<THandler>(ref THandler handler, int budget)
        where THandler : struct, IDescriptorChainHandler, allows ref struct
    {
        if (_status != VirtqueueStatus.Ok)
        {
            return 0;
        }

        Span<byte> bytes = _ring.Span;
        Span<ushort> words = MemoryMarshal.Cast<byte, ushort>(bytes);
        Span<uint> dwords = MemoryMarshal.Cast<byte, uint>(bytes);
        ReadOnlySpan<PackedDescriptor> descriptors = MemoryMarshal.Cast<byte, PackedDescriptor>(bytes);
        Span<bool> inFlight = _inFlight;
        ref GuestMemorySlice slot = ref _scratch[0];
        int size = _size;
        ushort nextAvail = _nextAvail;
        bool availWrap = _availWrap;
        ushort nextUsed = _nextUsed;
        bool usedWrap = _usedWrap;

        // The wrap counters as the flag bits they stand for, toggled with them (an XOR of both
        // bits): a slot is available when its two bits equal availBits (§2.8.1: AVAIL equal to
        // the wrap counter, USED not), and a used slot gets usedBits (both equal to the counter).
        DescriptorFlags availBits = availWrap ? DescriptorFlags.Available : DescriptorFlags.Used;
        DescriptorFlags usedBits = usedWrap ? BothBits : 0;
        int outstanding = _outstandingSlots;
        int completed = 0;
        int done = 0;
        while (done < budget)
        {
            // Acquire: the flags say the slot is ours; the descriptor is copied after.
            DescriptorFlags flags = (DescriptorFlags)Little(Volatile.Read(ref words[(nextAvail * 8) + 7]));
            if ((flags & BothBits) != availBits)
            {
                break;
            }

            PackedDescriptor descriptor = descriptors[nextAvail];
            uint length = descriptor.Length;
            ushort id = descriptor.Id;
            ulong address = descriptor.Address;
            ulong offset = address - _regionBase;
            if ((flags & ~(BothBits | DescriptorFlags.Write)) != 0 || length == 0 || id >= size || inFlight[id] || outstanding == size
                || offset >= _regionSize || length > _regionSize - offset)
            {
                break;
            }

            // The first region's fast path of GuestMemory.TryGetSlice (see _regionBase).
            slot = new GuestMemorySlice(_regionHost + (nint)offset, address, length);
            inFlight[id] = true;
            outstanding++;
            if (++nextAvail == size)
            {
                nextAvail = 0;
                availWrap = !availWrap;
                availBits ^= BothBits;
            }

            if (handler.Handle(DescriptorChain.OneBuffer(new ChainToken(id, 1), new ReadOnlySpan<GuestMemorySlice>(in slot), flags, length), out uint written))
            {
                // §2.8.4/§2.8.21: id and len first, then the flags with both bits equal to the
                // used wrap counter (release), which hands the slot back to the driver.
                int used = nextUsed * 8;
                dwords[(nextUsed * 4) + 2] = BitConverter.IsLittleEndian ? written : BinaryPrimitives.ReverseEndianness(written);
                words[used + 6] = Little(id);
                DescriptorFlags usedFlags = usedBits | (written != 0 ? DescriptorFlags.Write : 0);
                Volatile.Write(ref words[used + 7], Little((ushort)usedFlags));
                inFlight[id] = false;
                outstanding--;
                completed++;
                if (++nextUsed == size)
                {
                    nextUsed = 0;
                    usedWrap = !usedWrap;
                    usedBits ^= BothBits;
                }
            }

            done++;
        }

        _nextAvail = nextAvail;
        _availWrap = availWrap;
        _nextUsed = nextUsed;
        _usedWrap = usedWrap;
        _outstandingSlots = outstanding;
        _advancedSinceDecision += completed;
        _unpublished += completed;
        return done;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort Little(ushort value) => BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal VirtqueueStatus AddUsed(ChainToken token, uint writtenLength)
    {
        if (_memory is null)
        {
            return VirtqueueStatus.NotReady;
        }

        if (token.Id >= _size || !_inFlight[token.Id] || token.SlotCount == 0 || token.SlotCount > _outstandingSlots)
        {
            return VirtqueueStatus.InvalidUsedEntry;
        }

        // §2.8.4/§2.8.21: id and len first, then the flags with both bits equal to the used wrap
        // counter (release), which hands the slot back to the driver.
        uint slotOffset = (uint)_nextUsed * PackedDescriptor.Size;
        _ring.WriteUInt32(slotOffset + 8, writtenLength);
        _ring.WriteUInt16(slotOffset + 12, token.Id);
        DescriptorFlags flags = (_usedWrap ? BothBits : 0) | (writtenLength != 0 ? DescriptorFlags.Write : 0);
        _ring.StoreUInt16Release(slotOffset + PackedDescriptor.FlagsOffset, (ushort)flags);

        _inFlight[token.Id] = false;
        _outstandingSlots -= token.SlotCount;
        _advancedSinceDecision += token.SlotCount;
        _unpublished++;
        Advance(ref _nextUsed, ref _usedWrap, token.SlotCount);
        return VirtqueueStatus.Ok;
    }

    // Used descriptors are published one by one by their flags store; flushing only makes the
    // notification decision for everything written since the last one (§2.8.10, §2.8.21.2).
    internal bool FlushUsed()
    {
        if (_unpublished == 0 || _memory is null)
        {
            return false;
        }

        _unpublished = 0;

        // Full fence (used flags stores -> load of the driver's event suppression): the driver may
        // re-enable notifications and then re-check the ring; without the fence we could read its
        // stale DISABLE while it reads our stale flags, and nobody wakes it (§2.8.21.3.1 mirror).
        Interlocked.MemoryBarrier();
        ushort eventFlags = _driverEvent.LoadUInt16Acquire(PackedRingLayout.EventFlags);
        int advanced = _advancedSinceDecision;
        _advancedSinceDecision = 0;
        bool valid = _signalledValid;
        _signalledValid = true;
        switch (eventFlags & 0x3)
        {
            case PackedRingLayout.EventFlagsDisable:
                return false;
            case PackedRingLayout.EventFlagsDesc when _eventIndex:
                ushort offWrap = _driverEvent.LoadUInt16Acquire(PackedRingLayout.EventOffWrap);
                ushort offset = (ushort)(offWrap & 0x7FFF);
                bool wrap = (offWrap >> PackedRingLayout.WrapCounterBit) != 0;
                return !valid || PackedRingLayout.NeedsEvent(offset, wrap, _nextUsed, _usedWrap, Math.Min(advanced, (int)_size), _size);
            default:
                // ENABLE, DESC without EVENT_IDX (not allowed to the driver), or the reserved value:
                // notifying too often is harmless, never notifying could hang the driver.
                return true;
        }
    }

    internal bool EnableNotification()
    {
        if (_memory is null || _status != VirtqueueStatus.Ok)
        {
            return false;
        }

        if (_eventIndex)
        {
            // Kick me when the descriptor at my next position becomes available: off_wrap first,
            // then the mode (§2.8.10: the driver reads flags, then off_wrap).
            ushort offWrap = (ushort)(_nextAvail | (_availWrap ? 1 << PackedRingLayout.WrapCounterBit : 0));
            _deviceEvent.StoreUInt16Release(PackedRingLayout.EventOffWrap, offWrap);
            _deviceEvent.StoreUInt16Release(PackedRingLayout.EventFlags, PackedRingLayout.EventFlagsDesc);
        }
        else
        {
            _deviceEvent.StoreUInt16Release(PackedRingLayout.EventFlags, PackedRingLayout.EventFlagsEnable);
        }

        // Full fence (store event suppression -> load next descriptor flags): the lost-wakeup race
        // of §2.8.21.3 seen from the device.
        Interlocked.MemoryBarrier();
        DescriptorFlags flags = (DescriptorFlags)_ring.LoadUInt16Acquire(((uint)_nextAvail * PackedDescriptor.Size) + PackedDescriptor.FlagsOffset);
        return IsAvailable(flags, _availWrap);
    }

    internal void DisableNotification()
    {
        if (_memory is null)
        {
            return;
        }

        _deviceEvent.StoreUInt16Release(PackedRingLayout.EventFlags, PackedRingLayout.EventFlagsDisable);
    }

    internal VirtqueueState SaveState() => new()
    {
        Format = VirtqueueFormat.Packed,
        Features = VirtqueueFeatures.Packed | (_eventIndex ? VirtqueueFeatures.EventIndex : 0) | (_indirect ? VirtqueueFeatures.IndirectDescriptors : 0),
        Ready = _memory is not null,
        Config = _config,
        NextAvail = _nextAvail,
        NextUsed = _nextUsed,
        AvailWrapCounter = _availWrap,
        UsedWrapCounter = _usedWrap,
    };

    internal VirtqueueStatus RestoreState(GuestMemory memory, in VirtqueueState state)
    {
        Reset();
        if (!state.Ready)
        {
            return VirtqueueStatus.Ok;
        }

        VirtqueueStatus status = Activate(memory, state.Config, state.Features);
        if (status != VirtqueueStatus.Ok)
        {
            return status;
        }

        if (state.NextAvail >= _size || state.NextUsed >= _size)
        {
            Reset();
            return VirtqueueStatus.InvalidState;
        }

        // Slots between the used and available positions are in flight with the device, which
        // saved their tokens itself; their ids are unknown here, so id reuse is checked only for
        // chains popped after the restore.
        int outstanding = Distance(state.NextUsed, state.UsedWrapCounter, state.NextAvail, state.AvailWrapCounter, _size);
        if (outstanding < 0)
        {
            Reset();
            return VirtqueueStatus.InvalidState;
        }

        _nextAvail = state.NextAvail;
        _availWrap = state.AvailWrapCounter;
        _nextUsed = state.NextUsed;
        _usedWrap = state.UsedWrapCounter;
        _outstandingSlots = outstanding;
        return VirtqueueStatus.Ok;
    }

    internal void MarkInFlight(ushort id)
    {
        // After a restore the device re-registers the chains it still holds, so completing them
        // passes the in-flight check.
        if (id < _size)
        {
            _inFlight[id] = true;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsAvailable(DescriptorFlags flags, bool wrap)
    {
        // §2.8.1: available when AVAIL equals the expected wrap counter and USED differs from it.
        bool avail = (flags & DescriptorFlags.Available) != 0;
        bool used = (flags & DescriptorFlags.Used) != 0;
        return avail == wrap && used != wrap;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Advance(ref ushort position, ref bool wrap, int slots)
    {
        int next = position + slots;
        if (next >= _size)
        {
            next -= _size;
            wrap = !wrap;
        }

        position = (ushort)next;
    }

    // Slots from (from, fromWrap) forward to (to, toWrap), or -1 when `to` is behind `from`.
    private static int Distance(ushort from, bool fromWrap, ushort to, bool toWrap, ushort size)
    {
        if (fromWrap == toWrap)
        {
            return to >= from ? to - from : -1;
        }

        return to <= from ? to + size - from : -1;
    }

    private VirtqueueStatus TryPopChainSlow(DescriptorFlags firstFlags, PackedDescriptor first, out DescriptorChain chain)
    {
        chain = default;
        var walk = new ChainWalk();
        ushort slot = _nextAvail;
        bool wrap = _availWrap;
        DescriptorFlags flags = firstFlags;
        PackedDescriptor descriptor = first;
        int slots = 0;
        ushort id;

        while (true)
        {
            if ((flags & ~KnownFlags) != 0)
            {
                return Fail(VirtqueueStatus.InvalidDescriptorFlags);
            }

            slots++;
            if ((flags & DescriptorFlags.Indirect) != 0)
            {
                if (!_indirect)
                {
                    return Fail(VirtqueueStatus.IndirectNotNegotiated);
                }

                // §2.8.7: an indirect descriptor is never part of a NEXT list.
                if ((flags & DescriptorFlags.Next) != 0 || slots > 1)
                {
                    return Fail(VirtqueueStatus.IndirectWithNext);
                }

                VirtqueueStatus indirect = WalkIndirect(descriptor, ref walk);
                if (indirect != VirtqueueStatus.Ok)
                {
                    return Fail(indirect);
                }

                id = descriptor.Id;
                break;
            }

            VirtqueueStatus added = walk.Add(_memory!, _scratch, descriptor.Address, descriptor.Length, (flags & DescriptorFlags.Write) != 0);
            if (added != VirtqueueStatus.Ok)
            {
                return Fail(added);
            }

            if ((flags & DescriptorFlags.Next) == 0)
            {
                // §2.8.6: the buffer id is in the last descriptor of the list.
                id = descriptor.Id;
                break;
            }

            if (slots == _size)
            {
                return Fail(VirtqueueStatus.ChainTooLong);
            }

            Advance(ref slot, ref wrap, 1);
            uint offset = (uint)slot * PackedDescriptor.Size;
            // Ordered after the acquire load of the first descriptor's flags: the driver writes the
            // head's flags last (§2.8.6), so the rest of the chain is already in place.
            flags = (DescriptorFlags)_ring.ReadUInt16(offset + PackedDescriptor.FlagsOffset);
            if (!IsAvailable(flags, wrap))
            {
                return Fail(VirtqueueStatus.WrapCounterMismatch);
            }

            descriptor = _ring.Read<PackedDescriptor>(offset);
        }

        if (id >= _size || _inFlight[id])
        {
            return Fail(VirtqueueStatus.InvalidBufferId);
        }

        if (_outstandingSlots + slots > _size)
        {
            return Fail(VirtqueueStatus.AvailIndexRunaway);
        }

        _inFlight[id] = true;
        _outstandingSlots += slots;
        Advance(ref _nextAvail, ref _availWrap, slots);
        chain = walk.ToChain(new ChainToken(id, (ushort)slots), _scratch);
        return VirtqueueStatus.Ok;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private VirtqueueStatus WalkIndirect(PackedDescriptor table, ref ChainWalk walk)
    {
        uint length = table.Length;
        if (length == 0 || length % PackedDescriptor.Size != 0)
        {
            return VirtqueueStatus.IndirectTableInvalidLength;
        }

        if (_memory!.TryGetSlice(table.Address, length, out GuestMemorySlice slice) != GuestMemoryStatus.Ok)
        {
            return VirtqueueStatus.IndirectTableOutOfRange;
        }

        // §2.8.7: table entries are used in order; only WRITE is meaningful in them (NEXT and id
        // are ignored). An INDIRECT entry would be a nested table, which we refuse.
        uint count = length / PackedDescriptor.Size;
        for (uint i = 0; i < count; i++)
        {
            PackedDescriptor entry = slice.Read<PackedDescriptor>(i * PackedDescriptor.Size);
            DescriptorFlags flags = entry.Flags;
            if ((flags & DescriptorFlags.Indirect) != 0)
            {
                return VirtqueueStatus.NestedIndirect;
            }

            VirtqueueStatus added = walk.Add(_memory!, _scratch, entry.Address, entry.Length, (flags & DescriptorFlags.Write) != 0);
            if (added != VirtqueueStatus.Ok)
            {
                return added;
            }
        }

        return VirtqueueStatus.Ok;
    }

    private VirtqueueStatus Fail(VirtqueueStatus status)
    {
        Debug.Assert(status is not (VirtqueueStatus.Ok or VirtqueueStatus.Empty));
        _status = status;
        return status;
    }
}
