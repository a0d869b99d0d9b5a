using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// Every check the parser makes on guest data (ring-safety checklist §5; virtio 1.2 §2.7.4–§2.7.6):
// a broken ring yields the exact typed error, the queue then stays stopped (no further guest
// memory is consumed), and a reset plus re-activation on a clean ring works again.
public sealed class SplitVirtqueueValidationTests
{
    private const ushort Size = 16;

    [Test]
    public void TryPopChain_AvailIndexMovedMoreThanSize_ReturnsAvailIndexRunaway()
    {
        using var ring = Activated();
        ring.AddAndPublish(SplitRing.Writable(0, 8));
        ring.Driver.StoreAvailIndex(Size + 1);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.AvailIndexRunaway);
    }

    [Test]
    public void TryPopChain_AvailIndexMovedBackwards_ReturnsAvailIndexRunaway()
    {
        using var ring = Activated();
        ring.AddAndPublish(SplitRing.Writable(0, 8));
        ring.AddAndPublish(SplitRing.Writable(8, 8));
        Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Ok));
        Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Ok));
        ring.Driver.StoreAvailIndex(1);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.AvailIndexRunaway);
    }

    [Test]
    public void TryPopChain_MoreOutstandingThanSize_ReturnsAvailIndexRunaway()
    {
        // Size chains popped and not completed, then one more published: the driver would have
        // to reuse a descriptor the device still owns.
        using var ring = Activated();
        for (ushort i = 0; i < Size; i++)
        {
            ring.Driver.WriteDescriptor(i, new VirtqDescriptor(SplitRing.BufferBase, 8, DescriptorFlags.Write, 0));
            ring.PublishRawHead(i);
            Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Ok));
        }

        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.AvailIndexRunaway);
    }

    [Test]
    public void TryPopChain_HeadIndexEqualToSize_ReturnsHeadIndexOutOfRange()
    {
        using var ring = Activated();
        ring.PublishRawHead(Size);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.HeadIndexOutOfRange);
    }

    [Test]
    public void TryPopChain_NextIndexOutsideTable_ReturnsDescriptorIndexOutOfRange()
    {
        using var ring = Activated();
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase, 8, DescriptorFlags.Next, Size));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.DescriptorIndexOutOfRange);
    }

    [Test]
    public void TryPopChain_LoopedChain_ReturnsChainTooLong()
    {
        using var ring = Activated();
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase, 8, DescriptorFlags.Next, 1));
        ring.Driver.WriteDescriptor(1, new VirtqDescriptor(SplitRing.BufferBase, 8, DescriptorFlags.Next, 0));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.ChainTooLong);
    }

    [Test]
    public void TryPopChain_SelfLoopOnLastDescriptor_ReturnsChainTooLong()
    {
        using var ring = Activated();
        ring.Driver.WriteDescriptor(Size - 1, new VirtqDescriptor(SplitRing.BufferBase, 8, DescriptorFlags.Next, Size - 1));
        ring.PublishRawHead(Size - 1);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.ChainTooLong);
    }

    [Test]
    public void TryPopChain_ValidChainLongerThanDeviceLimit_ReturnsChainTooLong()
    {
        using var ring = new SplitRing(size: Size, maxChainLength: 2);
        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
        ring.AddAndPublish(SplitRing.Readable(0, 8), SplitRing.Readable(8, 8), SplitRing.Writable(16, 8));

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.ChainTooLong);
    }

    [Test]
    public void TryPopChain_ZeroLengthSingleBuffer_ReturnsZeroLengthBuffer()
    {
        using var ring = Activated();
        ring.AddAndPublish(SplitRing.Writable(0, 0));

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.ZeroLengthBuffer);
    }

    [Test]
    public void TryPopChain_ZeroLengthBufferInsideChain_ReturnsZeroLengthBuffer()
    {
        using var ring = Activated();
        ring.AddAndPublish(SplitRing.Readable(0, 8), SplitRing.Readable(8, 0), SplitRing.Writable(16, 8));

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.ZeroLengthBuffer);
    }

    [Test]
    public void TryPopChain_ReadableAfterWritable_ReturnsReadableAfterWritable()
    {
        using var ring = Activated();
        ring.AddAndPublish(SplitRing.Writable(0, 8), SplitRing.Readable(8, 8));

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.ReadableAfterWritable);
    }

    [TestCase(SplitRing.MemorySize, 8u, TestName = "TryPopChain_BufferBeyondGuestMemory_ReturnsBufferOutOfRange")]
    [TestCase(SplitRing.MemorySize - 4, 8u, TestName = "TryPopChain_BufferRunningOffTheEnd_ReturnsBufferOutOfRange")]
    [TestCase(ulong.MaxValue - 3, 8u, TestName = "TryPopChain_BufferAddressOverflows_ReturnsBufferOutOfRange")]
    public void TryPopChain_BadBufferAddress_ReturnsBufferOutOfRange(ulong address, uint length)
    {
        using var ring = Activated();
        ring.AddAndPublish(new DriverBuffer(address, length, DeviceWritable: true));

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.BufferOutOfRange);
    }

    [Test]
    public void TryPopChain_BufferStraddlingTwoRegions_ReturnsBufferOutOfRange()
    {
        const ulong half = 8UL << 20;
        var memory = new GuestMemory(GuestMemoryRegion.AllocateAnonymous(0, half), GuestMemoryRegion.AllocateAnonymous(half, half));
        using var ring = new SplitRing(size: Size, memory: memory);
        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
        ring.AddAndPublish(new DriverBuffer(half - 4, 8, DeviceWritable: true));

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.BufferOutOfRange);
    }

    [Test]
    public void TryPopChain_TotalLengthAbove4GiB_ReturnsTotalLengthOverflow()
    {
        // Two 2 GiB buffers over the same (lazily backed) 3 GiB region: each is in range, the sum is 2^32.
        var memory = GuestMemory.CreateAnonymous(3UL << 30);
        using var ring = new SplitRing(size: Size, memory: memory);
        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
        ring.AddAndPublish(new DriverBuffer(SplitRing.BufferBase, 0x8000_0000, false), new DriverBuffer(SplitRing.BufferBase, 0x8000_0000, false));

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.TotalLengthOverflow);
    }

    [Test]
    public void TryPopChain_UndefinedFlagBit_ReturnsInvalidDescriptorFlags()
    {
        using var ring = Activated();
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase, 8, (DescriptorFlags)0x8, 0));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.InvalidDescriptorFlags);
    }

    [Test]
    public void TryPopChain_IndirectWithoutFeature_ReturnsIndirectNotNegotiated()
    {
        using var ring = Activated();
        WriteIndirectTable(ring, 0x1000, SplitRing.Writable(0, 8));
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase + 0x1000, 16, DescriptorFlags.Indirect, 0));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.IndirectNotNegotiated);
    }

    [Test]
    public void TryPopChain_IndirectTogetherWithNext_ReturnsIndirectWithNext()
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        WriteIndirectTable(ring, 0x1000, SplitRing.Writable(0, 8));
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase + 0x1000, 16, DescriptorFlags.Indirect | DescriptorFlags.Next, 1));
        ring.Driver.WriteDescriptor(1, new VirtqDescriptor(SplitRing.BufferBase, 8, DescriptorFlags.Write, 0));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.IndirectWithNext);
    }

    [Test]
    public void TryPopChain_IndirectInsideIndirectTable_ReturnsNestedIndirect()
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        ring.Memory.TryWrite(SplitRing.BufferBase + 0x1000, Bytes(new VirtqDescriptor(SplitRing.BufferBase + 0x2000, 16, DescriptorFlags.Indirect, 0)));
        WriteIndirectTable(ring, 0x2000, SplitRing.Writable(0, 8));
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase + 0x1000, 16, DescriptorFlags.Indirect, 0));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.NestedIndirect);
    }

    [TestCase(0u)]
    [TestCase(20u)]
    [TestCase(15u)]
    public void TryPopChain_IndirectTableLengthNotMultipleOf16_ReturnsIndirectTableInvalidLength(uint length)
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        WriteIndirectTable(ring, 0x1000, SplitRing.Writable(0, 8), SplitRing.Writable(8, 8));
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase + 0x1000, length, DescriptorFlags.Indirect, 0));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.IndirectTableInvalidLength);
    }

    [Test]
    public void TryPopChain_IndirectTableOutsideMemory_ReturnsIndirectTableOutOfRange()
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.MemorySize - 16, 32, DescriptorFlags.Indirect, 0));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.IndirectTableOutOfRange);
    }

    [Test]
    public void TryPopChain_IndirectNextOutsideTable_ReturnsDescriptorIndexOutOfRange()
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        ring.Memory.TryWrite(SplitRing.BufferBase + 0x1000, Bytes(new VirtqDescriptor(SplitRing.BufferBase, 8, DescriptorFlags.Next, 2)));
        ring.Memory.TryWrite(SplitRing.BufferBase + 0x1010, Bytes(new VirtqDescriptor(SplitRing.BufferBase, 8, DescriptorFlags.Write, 0)));
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase + 0x1000, 32, DescriptorFlags.Indirect, 0));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.DescriptorIndexOutOfRange);
    }

    [Test]
    public void TryPopChain_LoopInsideIndirectTable_ReturnsChainTooLong()
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        ring.Memory.TryWrite(SplitRing.BufferBase + 0x1000, Bytes(new VirtqDescriptor(SplitRing.BufferBase, 8, DescriptorFlags.Next, 1)));
        ring.Memory.TryWrite(SplitRing.BufferBase + 0x1010, Bytes(new VirtqDescriptor(SplitRing.BufferBase, 8, DescriptorFlags.Next, 0)));
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase + 0x1000, 32, DescriptorFlags.Indirect, 0));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.ChainTooLong);
    }

    [Test]
    public void TryPopChain_BadBufferInsideIndirectTable_ReturnsBufferOutOfRange()
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        WriteIndirectTable(ring, 0x1000, SplitRing.Readable(0, 8), new DriverBuffer(SplitRing.MemorySize, 8, true));
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase + 0x1000, 32, DescriptorFlags.Indirect, 0));
        ring.PublishRawHead(0);

        AssertFailsAndStaysFailed(ring, VirtqueueStatus.BufferOutOfRange);
    }

    [Test]
    public void TryPopChain_GoodChainsBeforeTheBadOne_AreDeliveredThenTheErrorStops()
    {
        using var ring = Activated();
        ring.AddAndPublish(SplitRing.Writable(0, 8));
        ring.PublishRawHead(Size + 3);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Ok));
            Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.HeadIndexOutOfRange));
            Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.HeadIndexOutOfRange));
        }
    }

    internal static byte[] Bytes(VirtqDescriptor descriptor)
    {
        byte[] bytes = new byte[VirtqDescriptor.Size];
        System.Runtime.InteropServices.MemoryMarshal.Write(bytes, in descriptor);
        return bytes;
    }

    internal static void WriteIndirectTable(SplitRing ring, ulong offset, params DriverBuffer[] buffers)
    {
        for (int i = 0; i < buffers.Length; i++)
        {
            bool last = i == buffers.Length - 1;
            DescriptorFlags flags = (buffers[i].DeviceWritable ? DescriptorFlags.Write : 0) | (last ? 0 : DescriptorFlags.Next);
            ring.Memory.TryWrite(SplitRing.BufferBase + offset + (ulong)(i * VirtqDescriptor.Size), Bytes(new VirtqDescriptor(buffers[i].Address, buffers[i].Length, flags, (ushort)(i + 1))));
        }
    }

    private static SplitRing Activated(VirtqueueFeatures features = VirtqueueFeatures.None)
    {
        var ring = new SplitRing(size: Size, features: features);
        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
        return ring;
    }

    // The error is sticky: the queue neither pops nor flushes until reset, and the used ring is
    // untouched. After a reset and re-activation over a clean ring, the queue works again.
    private static void AssertFailsAndStaysFailed(SplitRing ring, VirtqueueStatus expected)
    {
        VirtqueueStatus first = ring.Queue.TryPopChain(out DescriptorChain chain);
        int bufferCount = chain.Buffers.Length;
        VirtqueueStatus second = ring.Queue.TryPopChain(out _);
        ushort usedIndex = ring.Driver.LoadUsedIndex();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(first, Is.EqualTo(expected));
            Assert.That(bufferCount, Is.Zero, "a failed pop hands out no buffers");
            Assert.That(second, Is.EqualTo(expected), "the error is sticky");
            Assert.That(ring.Queue.Status, Is.EqualTo(expected));
            Assert.That(ring.Queue.FlushUsed(), Is.False);
            Assert.That(usedIndex, Is.Zero, "nothing was completed");
        }

        using var fresh = new SplitRing(size: Size, features: ring.Features);
        ring.Queue.Reset();
        Assert.That(ring.Queue.Activate(fresh.Memory, fresh.Driver.Config, fresh.Features), Is.EqualTo(VirtqueueStatus.Ok));
        fresh.AddAndPublish(SplitRing.Writable(0, 8));
        Assert.That(ring.Queue.TryPopChain(out DescriptorChain good), Is.EqualTo(VirtqueueStatus.Ok));
        Assert.That(good.WritableLength, Is.EqualTo(8u));
    }
}
