using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

// The split ring's benchmark scenario for the packed ring: queue 256, EVENT_IDX, 16 MiB. Unlike
// the split ring, re-posting a chain means rewriting its slots (the device overwrote id, len and
// flags with its used descriptor), so the driver's per-batch share is real work; it is measured
// separately (PublishOnly rows).
internal sealed class PackedRingFixture : IDisposable
{
    internal const ushort Size = 256;
    internal const ulong BufferBase = 8UL << 20;

    private readonly GuestMemorySlice _ring;
    private readonly GuestMemorySlice _driverEvent;
    private readonly ulong _tables;
    private ushort _next;
    private bool _wrap = true;

    internal PackedRingFixture(ChainShape shape)
    {
        Memory = GuestMemory.CreateAnonymous(16UL << 20);
        var allocator = new GuestAllocator(Memory, 0x1000, (4UL << 20) - 0x1000);
        Driver = PackedRingDriver.Allocate(allocator, Size, eventIndex: true);
        Shape = shape;
        Memory.TryGetSlice(Driver.Config.DescriptorArea, PackedRingLayout.DescriptorRingSize(Size), out _ring);
        Memory.TryGetSlice(Driver.Config.DriverArea, PackedRingLayout.EventSuppressionSize, out _driverEvent);
        if (shape == ChainShape.IndirectOfThree)
        {
            _tables = allocator.Allocate(Size * 3 * 16, 16);
            for (uint i = 0; i < Size; i++)
            {
                uint t = i * 48;
                Memory.TryGetSlice(_tables + t, 48, out GuestMemorySlice table);
                table.Write(0, new PackedDescriptor(BufferBase + (i * 192), 16, 0, 0));
                table.Write(16, new PackedDescriptor(BufferBase + (i * 192) + 64, 48, 0, 0));
                table.Write(32, new PackedDescriptor(BufferBase + (i * 192) + 128, 64, 0, DescriptorFlags.Write));
            }
        }
    }

    internal GuestMemory Memory { get; }

    internal PackedRingDriver Driver { get; }

    internal ChainShape Shape { get; }

    internal VirtqueueFeatures Features => VirtqueueFeatures.Packed | VirtqueueFeatures.EventIndex | VirtqueueFeatures.IndirectDescriptors;

    // Re-posts `chains` chains starting at the driver position and asks for one interrupt, at the
    // last used descriptor of the batch. Each chain's head flags are stored last (release).
    internal void PublishBatch(int chains)
    {
        int slotsPerChain = Shape == ChainShape.ThreeDescriptors ? 3 : 1;
        for (int c = 0; c < chains; c++)
        {
            ushort head = _next;
            bool headWrap = _wrap;
            ushort id = (ushort)c;
            for (int k = slotsPerChain - 1; k >= 0; k--)
            {
                (ushort slot, bool wrap) = Offset(head, headWrap, k);
                uint offset = (uint)slot * PackedDescriptor.Size;
                DescriptorFlags avail = wrap ? DescriptorFlags.Available : DescriptorFlags.Used;
                switch (Shape)
                {
                    case ChainShape.OneDescriptor:
                        _ring.WriteUInt64(offset, BufferBase + ((ulong)slot * 64));
                        _ring.WriteUInt32(offset + 8, 64);
                        _ring.WriteUInt16(offset + 12, id);
                        _ring.StoreUInt16Release(offset + PackedDescriptor.FlagsOffset, (ushort)(avail | DescriptorFlags.Write));
                        break;
                    case ChainShape.IndirectOfThree:
                        _ring.WriteUInt64(offset, _tables + ((ulong)slot * 48));
                        _ring.WriteUInt32(offset + 8, 48);
                        _ring.WriteUInt16(offset + 12, id);
                        _ring.StoreUInt16Release(offset + PackedDescriptor.FlagsOffset, (ushort)(avail | DescriptorFlags.Indirect));
                        break;
                    default:
                        uint length = k == 0 ? 16u : k == 1 ? 48u : 64u;
                        DescriptorFlags flags = avail | (k < 2 ? DescriptorFlags.Next : DescriptorFlags.Write);
                        _ring.WriteUInt64(offset, BufferBase + ((ulong)slot * 64));
                        _ring.WriteUInt32(offset + 8, length);
                        _ring.WriteUInt16(offset + 12, id);
                        if (k == 0)
                        {
                            _ring.StoreUInt16Release(offset + PackedDescriptor.FlagsOffset, (ushort)flags);
                        }
                        else
                        {
                            _ring.WriteUInt16(offset + PackedDescriptor.FlagsOffset, (ushort)flags);
                        }

                        break;
                }
            }

            (_next, _wrap) = Offset(head, headWrap, slotsPerChain);
        }

        // The used descriptor of the batch's last chain lands at its head slot.
        (ushort last, bool lastWrap) = Offset(_next, _wrap, -slotsPerChain);
        _driverEvent.StoreUInt16Release(PackedRingLayout.EventOffWrap, (ushort)(last | (lastWrap ? 1 << 15 : 0)));
        _driverEvent.StoreUInt16Release(PackedRingLayout.EventFlags, PackedRingLayout.EventFlagsDesc);
    }

    public void Dispose() => Memory.Dispose();

    private static (ushort Slot, bool Wrap) Offset(ushort slot, bool wrap, int delta)
    {
        int s = slot + delta;
        while (s >= Size)
        {
            s -= Size;
            wrap = !wrap;
        }

        while (s < 0)
        {
            s += Size;
            wrap = !wrap;
        }

        return ((ushort)s, wrap);
    }
}
