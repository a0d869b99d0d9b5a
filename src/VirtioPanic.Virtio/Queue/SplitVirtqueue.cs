using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Queue;

// Design: the device side of one split virtqueue (virtio 1.2 §2.7), single consumer.
//
// Exactly one thread at a time pops, completes and flushes (the queue's owner); the driver (a
// guest vCPU, or a test thread) writes the available ring and descriptors concurrently. No locks:
// the only shared state is in guest memory, and each shared index has one writer:
//
//   avail.idx   driver writes (release); device reads with acquire once per batch (RefreshAvail),
//               which orders the plain reads of avail.ring[] and the descriptors after it.
//   used.idx    device writes with release once per flush, after the used elements and the data
//               written into buffers; the driver reads it with acquire.
//   used_event  driver writes; device reads after a full fence that follows the used.idx store.
//   avail_event device writes; then a full fence before re-reading avail.idx.
//
// Everything else here (_nextAvail, _shadowAvail, _nextUsed, _publishedUsed, the signalled-used
// bookkeeping and the scratch buffer) is private to the consumer thread.
//
// Guest data is read once: the head from avail.ring, each descriptor as one 16-byte copy, and the
// copy is validated before anything is derived from it. Every loop is bounded: the direct walk
// by the queue size, an indirect walk by the table's entry count, and the whole chain by the
// chain bound (MaxChainLength; the scratch buffer grows up to it). A chain that outgrows the
// scratch is walked again after it grew, at most log2(MaxChainLength / 8) times, and only the last
// walk's reads make the chain, so "read once" holds for every value the chain carries.
internal sealed partial class SplitVirtqueue
{
    private const DescriptorFlags KnownFlags = DescriptorFlags.Next | DescriptorFlags.Write | DescriptorFlags.Indirect;

    // Chain buffers of the current pop, grown on demand up to MaxChainLength (ChainScratch;
    // consumer-private, like everything below).
    private readonly ChainScratch _scratch;

    // The one buffer of a plain one-descriptor chain from ProcessSingle and ProcessDirect: a field,
    // so the chain's one-entry span is made from a ref to it without an array bounds check.
    // Consumer-private, valid until the next pop, like the scratch array.
    private GuestMemorySlice _single;
    private readonly ushort _maxSize;

    // Configuration, validated at activation and immutable until reset.
    private GuestMemory? _memory;
    private DescriptorTable _descriptors;
    // The three areas as one view validated here at activation (Memory/SplitRingView: its
    // accessors mask every entry position into the checked areas, so they make no range check per
    // access); made again by every Activate, RestoreState's included, dropped by Reset.
    private SplitRingView _ring;
    private VirtqueueConfig _config;
    private ushort _size;
    private ushort _mask;
    private bool _eventIndex;
    private bool _indirect;

    // The guest's first region, copied out of its GuestMemoryRegion at activation (regions are
    // immutable) so a batch translates a buffer with fields of this object, which the JIT keeps
    // close, instead of a chain of loads through GuestMemory. A miss falls back to
    // GuestMemory.TryGetSlice, which decides every other case; the hit is exactly its own fast path.
    private ulong _regionBase;
    private ulong _regionSize;
    private nint _regionHost;

    // Consumer-private progress.
    private ushort _nextAvail;      // next available-ring entry to pop
    private ushort _shadowAvail;    // avail.idx as last loaded; entries [_nextAvail, _shadowAvail) are published
    private ushort _nextUsed;       // next used-ring entry to write
    private ushort _publishedUsed;  // last value stored to used.idx
    private ushort _signalledUsed;  // used.idx at the last notification decision
    private bool _signalledValid;   // false until the first decision after (re)activation: always notify then
    private VirtqueueStatus _status = VirtqueueStatus.NotReady;

    internal SplitVirtqueue(ushort maxSize, int maxChainLength)
    {
        Debug.Assert(maxSize is > 0 and <= SplitRingLayout.MaxQueueSize && (maxSize & (maxSize - 1)) == 0);
        Debug.Assert(maxChainLength > 0);
        _maxSize = maxSize;
        _scratch = new ChainScratch(maxChainLength);
    }

    internal ushort Size => _size;

    internal VirtqueueStatus Status => _status;

    internal bool IsReady => _memory is not null;

    internal VirtqueueConfig Config => _config;

    internal ushort NextAvail => _nextAvail;

    internal ushort NextUsed => _nextUsed;

    internal VirtqueueStatus Activate(GuestMemory memory, in VirtqueueConfig config, VirtqueueFeatures features)
    {
        Reset();
        if ((features & (VirtqueueFeatures.Packed | VirtqueueFeatures.InOrder)) != 0)
        {
            return VirtqueueStatus.UnsupportedFeature;
        }

        ushort size = config.Size;
        if (size == 0 || size > _maxSize || (size & (size - 1)) != 0)
        {
            return VirtqueueStatus.InvalidSize;
        }

        if (config.DescriptorArea % SplitRingLayout.DescriptorTableAlignment != 0)
        {
            return VirtqueueStatus.MisalignedDescriptorArea;
        }

        if (config.DriverArea % SplitRingLayout.AvailRingAlignment != 0)
        {
            return VirtqueueStatus.MisalignedDriverArea;
        }

        if (config.DeviceArea % SplitRingLayout.UsedRingAlignment != 0)
        {
            return VirtqueueStatus.MisalignedDeviceArea;
        }

        if (memory.TryGetSlice(config.DescriptorArea, SplitRingLayout.DescriptorTableSize(size), out GuestMemorySlice descriptors) != GuestMemoryStatus.Ok)
        {
            return VirtqueueStatus.DescriptorAreaOutOfRange;
        }

        if (memory.TryGetSlice(config.DriverArea, SplitRingLayout.AvailRingSize(size), out GuestMemorySlice avail) != GuestMemoryStatus.Ok)
        {
            return VirtqueueStatus.DriverAreaOutOfRange;
        }

        if (memory.TryGetSlice(config.DeviceArea, SplitRingLayout.UsedRingSize(size), out GuestMemorySlice used) != GuestMemoryStatus.Ok)
        {
            return VirtqueueStatus.DeviceAreaOutOfRange;
        }

        // The ring view checks the three lengths against the size again; it cannot refuse slices
        // validated above for exactly this size, but if it did the queue stays not ready.
        if (!SplitRingView.TryCreate(descriptors, avail, used, size, out SplitRingView ring))
        {
            return VirtqueueStatus.DescriptorAreaOutOfRange;
        }

        _ring = ring;
        _memory = memory;
        GuestMemoryRegion first = memory.Regions[0];
        _regionBase = first.GuestAddress;
        _regionSize = first.Size;
        _regionHost = first.HostAddress;
        _config = config;
        _descriptors = new DescriptorTable(descriptors);
        _size = size;
        _mask = (ushort)(size - 1);
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
        _descriptors = default;
        _ring = default;
        _size = 0;
        _mask = 0;
        _eventIndex = false;
        _indirect = false;
        _nextAvail = 0;
        _shadowAvail = 0;
        _nextUsed = 0;
        _publishedUsed = 0;
        _signalledUsed = 0;
        _signalledValid = false;
        _status = VirtqueueStatus.NotReady;
        Array.Clear(_scratch.Buffers);
        _single = default;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal VirtqueueStatus TryPopChain(out DescriptorChain chain)
    {
        if (_nextAvail == _shadowAvail || _status != VirtqueueStatus.Ok)
        {
            VirtqueueStatus refreshed = RefreshAvail();
            if (refreshed != VirtqueueStatus.Ok)
            {
                chain = default;
                return refreshed;
            }
        }

        uint head = _ring.ReadAvailEntry(_nextAvail);
        if (head >= _size)
        {
            chain = default;
            return Fail(VirtqueueStatus.HeadIndexOutOfRange);
        }

        VirtqDescriptor descriptor = _descriptors.Read(head);

        // Fast path: one direct descriptor, the shape of most chains (a heartbeat, an event record).
        if ((descriptor.Flags & ~DescriptorFlags.Write) == 0)
        {
            uint length = descriptor.Length;
            if (length == 0)
            {
                chain = default;
                return Fail(VirtqueueStatus.ZeroLengthBuffer);
            }

            // Translate straight into the scratch slot: an intermediate local would be stored in
            // two halves and reloaded as one 16-byte copy, a store-forwarding stall per chain.
            if (_memory!.TryGetSlice(descriptor.Address, length, out _scratch.Buffers[0]) != GuestMemoryStatus.Ok)
            {
                chain = default;
                return Fail(VirtqueueStatus.BufferOutOfRange);
            }

            _nextAvail++;
            bool writable = (descriptor.Flags & DescriptorFlags.Write) != 0;
            chain = DescriptorChain.OneBuffer(new ChainToken((ushort)head, 1), _scratch.Buffers, writable, length);
            return VirtqueueStatus.Ok;
        }

        return TryPopChainSlow((ushort)head, descriptor, out chain);
    }

    // The batch form of TryPopChain + AddUsed. Used entries are written, not published: the
    // caller's FlushUsed publishes the batch with one release store. The run of plain
    // one-descriptor chains goes through ProcessDirect, a loop without calls; whatever it stops
    // at (a longer chain, an indirect one, or one that fails a check) is popped here by
    // TryPopChain, which validates it completely and reports the typed error. So every chain
    // passes exactly TryPopChain's checks, in its order (ProcessChainsEquivalencePropertyTests).
    //
    // The entry is small on purpose: the round of a device woken for every kick (one plain
    // one-descriptor chain, or none) is decided here with few live values, so this frame saves no
    // callee-saved registers and makes no call; everything else goes to ProcessBatch. Both load
    // avail.idx at most once per call and validate it the same way (RefreshAvail's checks).
    internal VirtqueueStatus ProcessChains<THandler>(ref THandler handler, int maxChains, out int processed)
        where THandler : struct, IDescriptorChainHandler, allows ref struct
    {
        if (_status == VirtqueueStatus.Ok && maxChains > 0 && _nextAvail == _shadowAvail)
        {
            // RefreshAvail, inline: the acquire load and the runaway checks.
            ushort availIndex = _ring.LoadAvailIndex();
            ushort pending = (ushort)(availIndex - _nextAvail);
            ushort outstanding = (ushort)(availIndex - _publishedUsed);
            if (outstanding > _size || pending > outstanding)
            {
                processed = 0;
                return Fail(VirtqueueStatus.AvailIndexRunaway);
            }

            _shadowAvail = availIndex;
            if (pending == 0)
            {
                processed = 0;
                return VirtqueueStatus.Empty;
            }

            // One chain waiting: a plain one-descriptor chain costs less through ProcessSingle
            // than through setting up the batch loops' views for it.
            if (pending == 1 && ProcessSingle(ref handler))
            {
                processed = 1;
                return maxChains == 1 ? VirtqueueStatus.Ok : VirtqueueStatus.Empty;
            }
        }

        return ProcessBatch(ref handler, maxChains, out processed);
    }

    // ProcessChains for everything but the lone chain: runs of plain one-descriptor chains
    // through ProcessDirect, runs of longer and indirect ones through ProcessWalked, the rest
    // through ProcessGeneral (TryPopChain).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private VirtqueueStatus ProcessBatch<THandler>(ref THandler handler, int maxChains, out int processed)
        where THandler : struct, IDescriptorChainHandler, allows ref struct
    {
        processed = 0;
        VirtqueueStatus status = _status;
        if (status != VirtqueueStatus.Ok || maxChains <= 0)
        {
            return status;
        }

        // At most one load of avail.idx per call: a call that handled every chain it saw reports
        // Empty without loading it again, because the caller's EnableNotification (or EndRound)
        // must re-check the ring after re-arming anyway, and that is the check that counts.
        if (_nextAvail == _shadowAvail)
        {
            status = RefreshAvail();
            if (status != VirtqueueStatus.Ok)
            {
                return status;
            }
        }

        int done = 0;
        while (done < maxChains && _nextAvail != _shadowAvail)
        {
            int run = ProcessDirect(ref handler, maxChains - done);
            done += run;
            if (done == maxChains || _nextAvail == _shadowAvail)
            {
                break;
            }

            int walked = ProcessWalked(ref handler, maxChains - done);
            done += walked;
            if (run + walked != 0)
            {
                continue;
            }

            status = ProcessGeneral(ref handler);
            if (status != VirtqueueStatus.Ok)
            {
                processed = done;
                return status;
            }

            done++;
        }

        processed = done;
        return done == maxChains ? VirtqueueStatus.Ok : VirtqueueStatus.Empty;
    }

    // Pops the next chain with TryPopChain (every check, the typed error, any translation) and
    // hands it to the handler: what the batch loops leave. Out of line, so the dispatcher above
    // keeps a small frame.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private VirtqueueStatus ProcessGeneral<THandler>(ref THandler handler)
        where THandler : struct, IDescriptorChainHandler, allows ref struct
    {
        VirtqueueStatus status = TryPopChain(out DescriptorChain chain);
        if (status != VirtqueueStatus.Ok)
        {
            return status;
        }

        if (handler.Handle(in chain, out uint written))
        {
            _ring.WriteUsedElement(_nextUsed, chain.Token.Id, written);
            _nextUsed++;
        }

        return VirtqueueStatus.Ok;
    }

    // One plain one-descriptor chain without the batch loops' set-up: ProcessDirect's checks
    // through the ring view. False, with nothing consumed, for anything else.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool ProcessSingle<THandler>(ref THandler handler)
        where THandler : struct, IDescriptorChainHandler, allows ref struct
    {
        uint head = _ring.ReadAvailEntry(_nextAvail);
        if (head >= _size)
        {
            return false;
        }

        VirtqDescriptor descriptor = _ring.ReadDescriptor(head);
        DescriptorFlags flags = descriptor.Flags;
        uint length = descriptor.Length;
        ulong address = descriptor.Address;
        ulong offset = address - _regionBase;
        if ((flags & ~DescriptorFlags.Write) != 0 || length == 0 || offset >= _regionSize || length > _regionSize - offset)
        {
            return false;
        }

        ref GuestMemorySlice slot = ref _single;
        slot = new GuestMemorySlice(_regionHost + (nint)offset, address, length);
        _nextAvail++;
        if (handler.Handle(DescriptorChain.OneBuffer(new ChainToken((ushort)head, 1), new ReadOnlySpan<GuestMemorySlice>(in slot), flags, length), out uint written))
        {
            _ring.WriteUsedElement(_nextUsed, head, written);
            _nextUsed++;
        }

        return true;
    }

    // Handles published one-descriptor direct chains, at most `budget`, and stops before the first
    // chain that is anything else or fails a check: ProcessWalked takes runs of longer and
    // indirect chains, TryPopChain anything either refuses (with its typed error). Every check
    // in these loops is one TryPopChain makes too, so they accept only chains TryPopChain
    // accepts, and build the same chain.
    //
    // Validated once, at activation: the ring view (Memory/SplitRingView) masks the avail and used
    // positions and the head into the areas Activate checked, so per chain the ring accesses make
    // no range check; the head check (head < Size) stays, for TryPopChain's typed error. No calls in the loop
    // (the handler is a struct the JIT inlines when it can), so the ring state stays in registers;
    // the positions are written back at the end (and _nextAvail before each handler call).
    private int ProcessDirect<THandler>(ref THandler handler, int budget)
        where THandler : struct, IDescriptorChainHandler, allows ref struct
    {
        ref GuestMemorySlice slot = ref _single;
        SplitRingView ring = _ring;   // a local: in this loop the JIT keeps its fields in registers (57.1 against 60.0 instructions per chain)
        uint size = _size;
        ushort next = _nextAvail;
        int remaining = Math.Min(budget, (ushort)(_shadowAvail - next));
        int done = 0;
        while (done < remaining)
        {
            uint head = ring.ReadAvailEntry(next);
            if (head >= size)
            {
                break;
            }

            VirtqDescriptor descriptor = ring.ReadDescriptor(head);
            DescriptorFlags flags = descriptor.Flags;
            uint length = descriptor.Length;
            ulong address = descriptor.Address;
            ulong offset = address - _regionBase;
            if ((flags & ~DescriptorFlags.Write) != 0 || length == 0 || offset >= _regionSize || length > _regionSize - offset)
            {
                break;
            }

            // The first region's fast path of GuestMemory.TryGetSlice (see _regionBase); a miss
            // stops here and TryPopChain translates through GuestMemory.
            slot = new GuestMemorySlice(_regionHost + (nint)offset, address, length);
            next++;

            // Keep _nextAvail current while the handler runs (AddUsed compares against it).
            _nextAvail = next;
            if (handler.Handle(DescriptorChain.OneBuffer(new ChainToken((ushort)head, 1), new ReadOnlySpan<GuestMemorySlice>(in slot), flags, length), out uint written))
            {
                ring.WriteUsedElement(_nextUsed, head, written);
                _nextUsed++;
            }

            done++;
        }

        return done;
    }

    // ProcessDirect's counterpart for runs of multi-descriptor direct chains and of chains with
    // one INDIRECT head descriptor: the same ring view, the walk's running state in
    // locals. It stops at a one-descriptor chain (ProcessDirect's), and before anything it does
    // not do (a direct chain ending in an indirect descriptor, a buffer outside the first region)
    // or that fails a check: TryPopChain then pops that one with its general translation or its
    // typed error.
    private int ProcessWalked<THandler>(ref THandler handler, int budget)
        where THandler : struct, IDescriptorChainHandler, allows ref struct
    {
        ReadOnlySpan<VirtqDescriptor> table = _descriptors.Entries;
        Span<GuestMemorySlice> scratch = _scratch.Buffers;
        ushort next = _nextAvail;
        // One loop bound instead of a count and a limit (one value fewer in the loop).
        ushort start = next;
        ushort end = (ushort)(next + Math.Min(budget, (ushort)(_shadowAvail - next)));
        while (next != end)
        {
            uint head = _ring.ReadAvailEntry(next);
            if (head >= (uint)table.Length)
            {
                break;
            }

            VirtqDescriptor descriptor = table[(int)head];
            DescriptorFlags flags = descriptor.Flags;
            uint length = descriptor.Length;
            ulong address = descriptor.Address;
            ulong offset = address - _regionBase;
            if ((flags & ~DescriptorFlags.Write) == 0)
            {
                break;   // a one-descriptor chain: ProcessDirect's
            }

            DescriptorChain chain;
            {
                // A direct chain, or one INDIRECT head descriptor (§2.7.5.3.2). The walk's
                // running state stays in locals; the bounds are TryPopChainSlow's: a TTL of the
                // table's entry count, next inside the table, the scratch capacity.
                ReadOnlySpan<VirtqDescriptor> source = table;
                if ((flags & DescriptorFlags.Indirect) != 0)
                {
                    if (!_indirect || (flags & ~DescriptorFlags.Indirect) != 0 || length == 0 || length % VirtqDescriptor.Size != 0
                        || offset >= _regionSize || length > _regionSize - offset)
                    {
                        break;
                    }

                    // An indirect table may sit at any guest address: its descriptors are read
                    // with plain loads, which x64 and Arm64 allow at any alignment.
                    source = MemoryMarshal.Cast<byte, VirtqDescriptor>(new GuestMemorySlice(_regionHost + (nint)offset, address, length).Span);
                    descriptor = source[0];
                }

                // TryPopChainSlow's bounds: a buffer past the scratch capacity (the slow path
                // grows the scratch up to MaxChainLength and walks that chain again), and a TTL of the
                // table's entry count, which here is the count itself (every descriptor walked
                // is one buffer): a NEXT after as many descriptors as the table has is refused.
                // Four values run along the walk: the count, the readable count, the total and the
                // total at the last readable buffer (the readable bytes; the rest is writable).
                int count = 0;
                int readable = 0;
                uint total = 0;
                uint readableLength = 0;
                while (true)
                {
                    flags = descriptor.Flags;
                    length = descriptor.Length;
                    address = descriptor.Address;
                    offset = address - _regionBase;
                    if ((flags & ~(DescriptorFlags.Next | DescriptorFlags.Write)) != 0 || length == 0 || (uint)count >= (uint)scratch.Length
                        || offset >= _regionSize || length > _regionSize - offset)
                    {
                        goto Stop;
                    }

                    // The running total in 32 bits: a carry is a total past 2^32 - 1.
                    total += length;
                    if (total < length)
                    {
                        goto Stop;
                    }

                    scratch[count] = new GuestMemorySlice(_regionHost + (nint)offset, address, length);
                    if ((flags & DescriptorFlags.Write) == 0)
                    {
                        // §2.7.4.2: device-readable buffers come first: every one before this
                        // one was readable.
                        if (readable != count)
                        {
                            goto Stop;
                        }

                        readable = count + 1;
                        readableLength = total;
                    }

                    count++;
                    if ((flags & DescriptorFlags.Next) == 0)
                    {
                        break;
                    }

                    uint index = descriptor.Next;
                    if ((uint)count == (uint)source.Length || index >= (uint)source.Length)
                    {
                        goto Stop;
                    }

                    descriptor = source[(int)index];
                }

                chain = new DescriptorChain(new ChainToken((ushort)head, 1), scratch[..count], readable, readableLength, total - readableLength);
            }

            next++;

            // Keep _nextAvail current while the handler runs (AddUsed compares against it).
            _nextAvail = next;
            if (handler.Handle(in chain, out uint written))
            {
                // The used position through the field, not a local: one value fewer across the walk.
                _ring.WriteUsedElement(_nextUsed, head, written);
                _nextUsed++;
            }
        }

    Stop:
        return (ushort)(next - start);
    }

    // Guest address -> slice, the first region from this object's copy of it (see _regionBase).
    // One unsigned compare rejects addresses below the base (the offset wraps); the length is a
    // descriptor's 32-bit length, so no 2^32 check is needed here.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryTranslate(ulong address, uint length, out GuestMemorySlice slice)
    {
        ulong offset = address - _regionBase;
        ulong regionSize = _regionSize;
        if (offset < regionSize && length <= regionSize - offset)
        {
            slice = new GuestMemorySlice(_regionHost + (nint)offset, address, length);
            return true;
        }

        return _memory!.TryGetSlice(address, length, out slice) == GuestMemoryStatus.Ok;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal VirtqueueStatus AddUsed(ChainToken token, uint writtenLength)
    {
        // More completions than pops, or an id outside the table, is a device bug: refuse it
        // rather than corrupt the used ring.
        if (token.Id >= _size || _nextUsed == _nextAvail)
        {
            return _memory is null ? VirtqueueStatus.NotReady : VirtqueueStatus.InvalidUsedEntry;
        }

        _ring.WriteUsedElement(_nextUsed, token.Id, writtenLength);
        _nextUsed++;
        return VirtqueueStatus.Ok;
    }

    // Publishes every used element added since the last flush with one release store of used.idx
    // and decides whether the driver wants a used-buffer notification (virtio 1.2 §2.7.7.2).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool FlushUsed()
    {
        if (_nextUsed == _publishedUsed || _memory is null)
        {
            return false;
        }

        // Release: the used elements and the bytes written into the buffers become visible no
        // later than the new used.idx (§2.7.8.2 device MUST set len before updating idx). And a
        // full fence after it (store used.idx -> load used_event/avail.flags): without it we could
        // read a stale used_event from before the driver re-armed callbacks, while the driver
        // reads the old used.idx after re-arming: both sides conclude the other will act, and the
        // driver never gets its interrupt (§2.7.7, the race Linux closes with virtio_mb). One
        // exchange is both (SplitRingView: the Exchange* forms).
        _ring.ExchangeUsedIndex(_nextUsed);
        _publishedUsed = _nextUsed;
        return Decide();
    }

    internal VirtqueueState SaveState()
    {
        // Unpublished used elements would be lost on restore (which trusts NextUsed as used.idx).
        if (_memory is not null && _nextUsed != _publishedUsed)
        {
            _ring.StoreUsedIndex(_nextUsed);
            _publishedUsed = _nextUsed;
        }

        return new VirtqueueState
        {
            Format = VirtqueueFormat.Split,
            Features = (_eventIndex ? VirtqueueFeatures.EventIndex : 0) | (_indirect ? VirtqueueFeatures.IndirectDescriptors : 0),
            Ready = _memory is not null,
            Config = _config,
            NextAvail = _nextAvail,
            NextUsed = _nextUsed,
        };
    }

    internal VirtqueueStatus RestoreState(GuestMemory memory, in VirtqueueState state)
    {
        Reset();
        if (!state.Ready)
        {
            return VirtqueueStatus.Ok;
        }

        if (state.Format != VirtqueueFormat.Split)
        {
            return VirtqueueStatus.UnsupportedFeature;
        }

        VirtqueueStatus status = Activate(memory, state.Config, state.Features);
        if (status != VirtqueueStatus.Ok)
        {
            return status;
        }

        // In flight = popped but not used; never more than the queue holds.
        if ((ushort)(state.NextAvail - state.NextUsed) > _size)
        {
            Reset();
            return VirtqueueStatus.InvalidState;
        }

        _nextAvail = state.NextAvail;
        _shadowAvail = state.NextAvail;
        _nextUsed = state.NextUsed;
        _publishedUsed = state.NextUsed;
        return VirtqueueStatus.Ok;
    }

    // Loads avail.idx (acquire) and validates how far it moved. Called once per batch: only when
    // every entry seen by the previous load has been popped.
    private VirtqueueStatus RefreshAvail()
    {
        if (_status != VirtqueueStatus.Ok)
        {
            return _status;
        }

        ushort availIndex = _ring.LoadAvailIndex();
        ushort pending = (ushort)(availIndex - _nextAvail);
        // A correct driver never has more than Size buffers outstanding (each owns at least its
        // head descriptor), counted from the last used.idx it could have seen. A larger distance,
        // or an index that moved backwards, is a runaway (QEMU: "Guest moved used index").
        ushort outstanding = (ushort)(availIndex - _publishedUsed);
        // (pending > Size is refused too: pending <= outstanding <= Size.)
        if (outstanding > _size || pending > outstanding)
        {
            return Fail(VirtqueueStatus.AvailIndexRunaway);
        }

        _shadowAvail = availIndex;
        return pending == 0 ? VirtqueueStatus.Empty : VirtqueueStatus.Ok;
    }

    // The general walk: every check with its typed error. A chain longer than the scratch so far
    // grows it (up to MaxChainLength) and is walked again from its head; nothing of the first walk
    // is kept, so every value used is read in the walk that produced the chain.
    private VirtqueueStatus TryPopChainSlow(ushort head, VirtqDescriptor descriptor, out DescriptorChain chain)
    {
        while (true)
        {
            VirtqueueStatus status = WalkChain(head, descriptor, _scratch.Buffers, out chain, out bool scratchFull);
            if (status == VirtqueueStatus.Ok)
            {
                return status;
            }

            if (!(status == VirtqueueStatus.ChainTooLong && scratchFull && _scratch.TryGrow()))
            {
                return Fail(status);
            }
        }
    }

    // One walk of the chain at head into the scratch as it is; scratchFull: it stopped because
    // the scratch had no room left (TryPopChainSlow may grow it and walk again).
    private VirtqueueStatus WalkChain(ushort head, VirtqDescriptor descriptor, GuestMemorySlice[] scratch, out DescriptorChain chain, out bool scratchFull)
    {
        chain = default;
        scratchFull = false;
        var walk = new ChainWalk();
        uint index = head;
        int ttl = _size;   // a direct walk longer than the table must revisit a descriptor: a loop

        while (true)
        {
            DescriptorFlags flags = descriptor.Flags;
            if ((flags & ~KnownFlags) != 0)
            {
                return VirtqueueStatus.InvalidDescriptorFlags;
            }

            if ((flags & DescriptorFlags.Indirect) != 0)
            {
                // §2.7.5.3.2: zero or more direct descriptors followed by one final INDIRECT one.
                if (!_indirect)
                {
                    return VirtqueueStatus.IndirectNotNegotiated;
                }

                if ((flags & DescriptorFlags.Next) != 0)
                {
                    return VirtqueueStatus.IndirectWithNext;
                }

                VirtqueueStatus indirect = WalkIndirect(descriptor, scratch, ref walk);
                if (indirect != VirtqueueStatus.Ok)
                {
                    scratchFull = walk.Count == scratch.Length;
                    return indirect;
                }

                break;
            }

            VirtqueueStatus added = walk.Add(_memory!, scratch, descriptor.Address, descriptor.Length, (descriptor.Flags & DescriptorFlags.Write) != 0);
            if (added != VirtqueueStatus.Ok)
            {
                scratchFull = walk.Count == scratch.Length;
                return added;
            }

            if ((flags & DescriptorFlags.Next) == 0)
            {
                break;
            }

            if (--ttl == 0)
            {
                return VirtqueueStatus.ChainTooLong;
            }

            index = descriptor.Next;
            if (index >= _size)
            {
                return VirtqueueStatus.DescriptorIndexOutOfRange;
            }

            descriptor = _descriptors.Read(index);
        }

        _nextAvail++;
        chain = walk.ToChain(new ChainToken(head, 1), scratch);
        return VirtqueueStatus.Ok;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private VirtqueueStatus WalkIndirect(VirtqDescriptor table, GuestMemorySlice[] scratch, ref ChainWalk walk)
    {
        uint length = table.Length;
        if (length == 0 || length % VirtqDescriptor.Size != 0)
        {
            return VirtqueueStatus.IndirectTableInvalidLength;
        }

        if (_memory!.TryGetSlice(table.Address, length, out GuestMemorySlice slice) != GuestMemoryStatus.Ok)
        {
            return VirtqueueStatus.IndirectTableOutOfRange;
        }

        var entries = new DescriptorTable(slice);
        uint count = length / VirtqDescriptor.Size;
        uint index = 0;
        uint ttl = count;
        while (true)
        {
            VirtqDescriptor descriptor = entries.Read(index);
            DescriptorFlags flags = descriptor.Flags;
            if ((flags & DescriptorFlags.Indirect) != 0)
            {
                return VirtqueueStatus.NestedIndirect;
            }

            if ((flags & ~KnownFlags) != 0)
            {
                return VirtqueueStatus.InvalidDescriptorFlags;
            }

            VirtqueueStatus added = walk.Add(_memory!, scratch, descriptor.Address, descriptor.Length, (descriptor.Flags & DescriptorFlags.Write) != 0);
            if (added != VirtqueueStatus.Ok)
            {
                return added;
            }

            if ((flags & DescriptorFlags.Next) == 0)
            {
                return VirtqueueStatus.Ok;
            }

            if (--ttl == 0)
            {
                return VirtqueueStatus.ChainTooLong;
            }

            index = descriptor.Next;
            if (index >= count)
            {
                return VirtqueueStatus.DescriptorIndexOutOfRange;
            }
        }
    }

    private VirtqueueStatus Fail(VirtqueueStatus status)
    {
        Debug.Assert(status is not (VirtqueueStatus.Ok or VirtqueueStatus.Empty));
        _status = status;
        return status;
    }
}
