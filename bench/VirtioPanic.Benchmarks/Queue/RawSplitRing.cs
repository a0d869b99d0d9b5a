using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

// The memory-traffic floor for one-descriptor chains: exactly the loads and stores the engine
// performs (avail.idx, avail.ring[], the 16-byte descriptor, the 8-byte used element, used.idx,
// the fence and used_event), with no validation and no abstraction. Not safe against a hostile
// guest — that is the point: it is what the validated engine is compared against.
internal struct RawSplitRing
{
    private readonly GuestMemorySlice _descriptors;
    private readonly GuestMemorySlice _avail;
    private readonly GuestMemorySlice _used;
    private ushort _nextAvail;
    private ushort _nextUsed;

    internal RawSplitRing(GuestMemory memory, VirtqueueConfig config)
    {
        memory.TryGetSlice(config.DescriptorArea, SplitRingLayout.DescriptorTableSize(config.Size), out _descriptors);
        memory.TryGetSlice(config.DriverArea, SplitRingLayout.AvailRingSize(config.Size), out _avail);
        memory.TryGetSlice(config.DeviceArea, SplitRingLayout.UsedRingSize(config.Size), out _used);
    }

    internal uint Drain()
    {
        ref byte desc = ref MemoryMarshal.GetReference(_descriptors.Span);
        ref byte avail = ref MemoryMarshal.GetReference(_avail.Span);
        ref byte used = ref MemoryMarshal.GetReference(_used.Span);
        const int mask = SplitRingFixture.Size - 1;
        ushort availIndex = Volatile.Read(ref Unsafe.As<byte, ushort>(ref Unsafe.Add(ref avail, 2)));
        uint total = 0;
        ushort next = _nextAvail;
        ushort usedIndex = _nextUsed;
        while (next != availIndex)
        {
            ushort head = Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref avail, 4 + ((next & mask) * 2)));
            VirtqDescriptor d = Unsafe.ReadUnaligned<VirtqDescriptor>(ref Unsafe.Add(ref desc, head * 16));
            total += d.Length;
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref used, 4 + ((usedIndex & mask) * 8)), (ulong)head);
            usedIndex++;
            next++;
        }

        _nextAvail = next;
        _nextUsed = usedIndex;
        Volatile.Write(ref Unsafe.As<byte, ushort>(ref Unsafe.Add(ref used, 2)), usedIndex);
        Interlocked.MemoryBarrier();
        ushort usedEvent = Volatile.Read(ref Unsafe.As<byte, ushort>(ref Unsafe.Add(ref avail, 4 + (SplitRingFixture.Size * 2))));
        Volatile.Write(ref Unsafe.As<byte, ushort>(ref Unsafe.Add(ref used, 4 + (SplitRingFixture.Size * 8))), next);
        Interlocked.MemoryBarrier();
        return total + usedEvent;
    }
}
