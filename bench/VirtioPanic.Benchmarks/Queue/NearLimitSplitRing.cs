using System.Runtime.CompilerServices;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

// The near-limit reference for the split-ring rows: what a device must do per chain, on raw
// pointers, with the same classes of validation as the engine, and nothing else: no chain view,
// no handler, no format-neutral wrapper, no typed error per case (any failure just stops). The
// rows built on it give every ring table its "÷ reference" column from the same
// BenchmarkDotNet run. It is benchmark code, outside the project's unsafe-code fence by design
// (src/README.md §3); the engine itself never sees a pointer.
//
// Per round: one acquire load of avail.idx and the runaway check (never more than the queue size
// outstanding); per chain: head in range, per descriptor: known flags (no indirect here), non-zero
// length, [addr, addr + len) inside the single guest region without overflow, the 2^32 chain total,
// readable before writable, next in range, a TTL of the queue size; the 8-byte used element; per
// round: the release store of used.idx, a full fence, the EVENT_IDX decision (virtio 1.2 §2.7.7.2),
// then re-arming (avail_event store, full fence, avail.idx re-check, §2.7.10).
internal unsafe struct NearLimitSplitRing
{
    private const ushort NextFlag = 1;
    private const ushort WriteFlag = 2;
    private const ushort DirectFlags = NextFlag | WriteFlag;   // INDIRECT (4) and unknown bits are refused

    private readonly byte* _descriptors;
    private readonly byte* _avail;
    private readonly byte* _used;
    private readonly ulong _memorySize;
    private readonly uint _size;
    private ushort _nextAvail;
    private ushort _nextUsed;
    private ushort _signalledUsed;
    private bool _failed;

    internal NearLimitSplitRing(GuestMemory memory, VirtqueueConfig config)
    {
        GuestMemoryRegion region = memory.Regions[0];
        if (memory.Regions.Count != 1 || region.GuestAddress != 0)
        {
            throw new InvalidOperationException("the reference loop assumes one region at guest address 0");
        }

        // SAFETY (benchmark code): the region is mapped for the fixture's lifetime and the three
        // ring areas were placed inside it by the guest-driver harness.
        byte* host = (byte*)region.HostAddress;
        _memorySize = region.Size;
        _descriptors = host + config.DescriptorArea;
        _avail = host + config.DriverArea;
        _used = host + config.DeviceArea;
        _size = config.Size;
    }

    internal readonly bool Failed => _failed;

    // One round: drain everything published, then publish used.idx, decide on the interrupt and
    // re-arm. Returns the bytes walked (so nothing is dead code); counts interrupts due.
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal uint Round(ref long interrupts)
    {
        byte* avail = _avail;
        byte* used = _used;
        byte* descriptors = _descriptors;
        ulong memorySize = _memorySize;
        uint size = _size;
        uint mask = size - 1;
        ushort next = _nextAvail;
        ushort nextUsed = _nextUsed;
        uint total = 0;

        ushort availIndex = Volatile.Read(ref *(ushort*)(avail + 2));
        if ((ushort)(availIndex - next) > size)
        {
            _failed = true;
            return 0;
        }

        while (next != availIndex)
        {
            uint head = *(ushort*)(avail + 4 + ((next & mask) * 2));
            if (head >= size)
            {
                _failed = true;
                return 0;
            }

            uint index = head;
            uint ttl = size;
            ulong chainTotal = 0;
            bool seenWritable = false;
            while (true)
            {
                byte* d = descriptors + (index * 16);
                ulong address = *(ulong*)d;
                uint length = *(uint*)(d + 8);
                ushort flags = *(ushort*)(d + 12);
                ushort nextIndex = *(ushort*)(d + 14);
                bool writable = (flags & WriteFlag) != 0;
                if ((flags & ~DirectFlags) != 0 || length == 0 || address >= memorySize || length > memorySize - address
                    || (seenWritable && !writable))
                {
                    _failed = true;
                    return 0;
                }

                seenWritable |= writable;
                chainTotal += length;
                if ((flags & NextFlag) == 0)
                {
                    break;
                }

                index = nextIndex;
                if (--ttl == 0 || index >= size)
                {
                    _failed = true;
                    return 0;
                }
            }

            if (chainTotal > uint.MaxValue)
            {
                _failed = true;
                return 0;
            }

            total += (uint)chainTotal;
            *(ulong*)(used + 4 + ((nextUsed & mask) * 8)) = head;
            nextUsed++;
            next++;
        }

        _nextAvail = next;
        _nextUsed = nextUsed;
        Volatile.Write(ref *(ushort*)(used + 2), nextUsed);
        Interlocked.MemoryBarrier();
        ushort usedEvent = Volatile.Read(ref *(ushort*)(avail + 4 + (size * 2)));
        if ((ushort)(nextUsed - usedEvent - 1) < (ushort)(nextUsed - _signalledUsed))
        {
            interrupts++;
        }

        _signalledUsed = nextUsed;
        Volatile.Write(ref *(ushort*)(used + 4 + (size * 8)), next);
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref *(ushort*)(avail + 2)) != next)
        {
            interrupts += 0x1_0000_0000;   // buffers arrived while re-arming: never in these rows
        }

        return total;
    }
}
