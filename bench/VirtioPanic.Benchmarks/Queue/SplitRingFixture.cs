using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

// The measured scenario of ring-safety-and-peers.md §6.2 A1: queue size 256, EVENT_IDX on, a
// 16 MiB guest, descriptors prepared once by the guest-driver harness. Per batch the "driver"
// only moves avail.idx (and writes avail entries where the batch does not line up with the ring)
// and sets used_event so one interrupt is due per batch; everything else the driver does is
// outside the measurement, as in the peer's setup.
internal sealed class SplitRingFixture : IDisposable
{
    internal const ushort Size = 256;
    internal const ulong BufferBase = 8UL << 20;

    private readonly GuestMemorySlice _avail;

    internal SplitRingFixture(ChainShape shape)
    {
        Memory = GuestMemory.CreateAnonymous(16UL << 20);
        var allocator = new GuestAllocator(Memory, 0x1000, (4UL << 20) - 0x1000);
        Driver = SplitRingDriver.Allocate(allocator, Size, eventIndex: true);
        Shape = shape;
        Memory.TryGetSlice(Driver.Config.DriverArea, SplitRingLayout.AvailRingSize(Size), out _avail);

        switch (shape)
        {
            case ChainShape.OneDescriptor:
                for (ushort i = 0; i < Size; i++)
                {
                    Driver.WriteDescriptor(i, new VirtqDescriptor(BufferBase + ((ulong)i * 64), 64, DescriptorFlags.Write, 0));
                    Driver.WriteAvailEntry(i, i);   // slot i always holds head i: full-ring batches need no avail writes
                }

                break;
            case ChainShape.ThreeDescriptors:
                for (ushort k = 0; k < ChainsPerBatch(shape); k++)
                {
                    ushort d = (ushort)(3 * k);
                    Driver.WriteDescriptor(d, new VirtqDescriptor(BufferBase + ((ulong)d * 64), 16, DescriptorFlags.Next, (ushort)(d + 1)));
                    Driver.WriteDescriptor((ushort)(d + 1), new VirtqDescriptor(BufferBase + ((ulong)(d + 1) * 64), 48, DescriptorFlags.Next, (ushort)(d + 2)));
                    Driver.WriteDescriptor((ushort)(d + 2), new VirtqDescriptor(BufferBase + ((ulong)(d + 2) * 64), 64, DescriptorFlags.Write, 0));
                }

                break;
            case ChainShape.IndirectOfThree:
                ulong tables = allocator.Allocate(Size * 3 * 16, 16);
                for (ushort i = 0; i < Size; i++)
                {
                    ulong table = tables + ((ulong)i * 48);
                    WriteRaw(table, new VirtqDescriptor(BufferBase + ((ulong)i * 192), 16, DescriptorFlags.Next, 1));
                    WriteRaw(table + 16, new VirtqDescriptor(BufferBase + ((ulong)i * 192) + 64, 48, DescriptorFlags.Next, 2));
                    WriteRaw(table + 32, new VirtqDescriptor(BufferBase + ((ulong)i * 192) + 128, 64, DescriptorFlags.Write, 0));
                    Driver.WriteDescriptor(i, new VirtqDescriptor(table, 48, DescriptorFlags.Indirect, 0));
                    Driver.WriteAvailEntry(i, i);
                }

                break;
        }
    }

    internal GuestMemory Memory { get; }

    internal SplitRingDriver Driver { get; }

    internal ChainShape Shape { get; }

    internal VirtqueueFeatures Features => VirtqueueFeatures.EventIndex | VirtqueueFeatures.IndirectDescriptors;

    internal ushort AvailIndex { get; private set; }

    internal static int ChainsPerBatch(ChainShape shape) => shape == ChainShape.ThreeDescriptors ? 85 : Size;

    // The driver's per-batch work: make `count` more chains available and ask for one interrupt
    // when the device has used the last of them.
    internal void PublishBatch(int count)
    {
        if (Shape == ChainShape.ThreeDescriptors)
        {
            for (int k = 0; k < count; k++)
            {
                _avail.WriteUInt16(SplitRingLayout.AvailRing + ((uint)((AvailIndex + k) & (Size - 1)) * 2), (ushort)(3 * k));
            }
        }

        AvailIndex = (ushort)(AvailIndex + count);
        _avail.StoreUInt16Release(SplitRingLayout.UsedEventOffset(Size), (ushort)(AvailIndex - 1));
        _avail.StoreUInt16Release(SplitRingLayout.AvailIndex, AvailIndex);
    }

    public void Dispose() => Memory.Dispose();

    private void WriteRaw(ulong address, VirtqDescriptor descriptor)
    {
        Span<byte> bytes = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, descriptor.Address);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[8..], descriptor.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[12..], (ushort)descriptor.Flags);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[14..], descriptor.Next);
        Memory.TryWrite(address, bytes);
    }
}

internal enum ChainShape
{
    OneDescriptor,
    ThreeDescriptors,
    IndirectOfThree,
}
