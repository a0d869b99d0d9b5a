using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// The packed ring (virtio 1.2 §2.8): activation, the validation matrix, wraparound of the ring and
// of the wrap counters, each event-suppression mode, indirect tables, save/restore.
public sealed class PackedVirtqueueTests
{
    private const ushort Size = 16;

    [Test]
    public void Activate_NonPowerOfTwoSize_IsAccepted()
    {
        using var ring = new PackedRing(size: 12);

        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
        Assert.That((ring.Queue.Format, ring.Queue.Size), Is.EqualTo((VirtqueueFormat.Packed, (ushort)12)));
    }

    [TestCase(8UL, 0UL, 0UL, VirtqueueStatus.MisalignedDescriptorArea)]
    [TestCase(0UL, 2UL, 0UL, VirtqueueStatus.MisalignedDriverArea)]
    [TestCase(0UL, 0UL, 2UL, VirtqueueStatus.MisalignedDeviceArea)]
    public void Activate_MisalignedArea_ReturnsWhichArea(ulong descShift, ulong driverShift, ulong deviceShift, VirtqueueStatus expected)
    {
        using var ring = new PackedRing();
        VirtqueueConfig c = ring.Driver.Config;
        var config = new VirtqueueConfig(c.Size, c.DescriptorArea + descShift, c.DriverArea + driverShift, c.DeviceArea + deviceShift);

        Assert.That(ring.Queue.Activate(ring.Memory, config, ring.Features), Is.EqualTo(expected));
    }

    [TestCase((ushort)0)]
    [TestCase((ushort)17)]
    public void Activate_SizeZeroOrAboveMax_ReturnsInvalidSize(ushort size)
    {
        using var ring = new PackedRing(size: 16);

        Assert.That(ring.Queue.Activate(ring.Memory, ring.Driver.Config with { Size = size }, ring.Features), Is.EqualTo(VirtqueueStatus.InvalidSize));
    }

    [Test]
    public void Activate_RingRunsOffMemory_ReturnsDescriptorAreaOutOfRange()
    {
        using var ring = new PackedRing();

        Assert.That(ring.Queue.Activate(ring.Memory, ring.Driver.Config with { DescriptorArea = PackedRing.MemorySize - 16 }, ring.Features), Is.EqualTo(VirtqueueStatus.DescriptorAreaOutOfRange));
    }

    [Test]
    public void Activate_InOrder_IsRefusedBecauseNotImplemented()
    {
        using var ring = new PackedRing();

        Assert.That(ring.Queue.Activate(ring.Memory, ring.Driver.Config, ring.Features | VirtqueueFeatures.InOrder), Is.EqualTo(VirtqueueStatus.UnsupportedFeature));
    }

    [Test]
    public void TryPopChain_ReadReadWrite_HandsOutBuffersAndLastDescriptorsId()
    {
        using var ring = Activated();
        ushort id = ring.AddAndPublish(PackedRing.Readable(0, 16), PackedRing.Readable(0x100, 4), PackedRing.Writable(0x200, 64));

        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(chain.Token, Is.EqualTo(new ChainToken(id, 3)));
            Assert.That(chain.Readable.Length, Is.EqualTo(2));
            Assert.That(chain.Writable[0].GuestAddress, Is.EqualTo(PackedRing.BufferBase + 0x200));
            Assert.That(chain.ReadableLength, Is.EqualTo(20u));
            Assert.That(chain.WritableLength, Is.EqualTo(64u));
        }
    }

    [Test]
    public void TryPopChain_BeforePublish_ReturnsEmpty()
    {
        using var ring = Activated();
        ring.Driver.TryAdd([PackedRing.Writable(0, 8)], out _);

        Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Empty));
        ring.Driver.Publish();
        Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Ok));
    }

    [Test]
    public void AddUsed_WritesIdLengthAndBothBitsAtTheUsedPosition()
    {
        using var ring = Activated();
        ushort first = ring.AddAndPublish(PackedRing.Readable(0, 8), PackedRing.Writable(8, 8));
        ushort second = ring.AddAndPublish(PackedRing.Writable(16, 8));
        ring.Queue.TryPopChain(out DescriptorChain a);
        ChainToken ta = a.Token;
        ring.Queue.TryPopChain(out DescriptorChain b);
        ChainToken tb = b.Token;

        // Complete out of order: the second chain first.
        ring.Queue.AddUsed(tb, 5);
        ring.Queue.AddUsed(ta, 7);
        ring.Queue.FlushUsed();

        Assert.That(ring.Driver.TryGetUsed(out UsedBuffer u1), Is.EqualTo(UsedBufferStatus.Ok));
        Assert.That(ring.Driver.TryGetUsed(out UsedBuffer u2), Is.EqualTo(UsedBufferStatus.Ok));
        Assert.That((u1, u2), Is.EqualTo((new UsedBuffer(second, 5), new UsedBuffer(first, 7))));
        Assert.That(ring.Driver.FreeCount, Is.EqualTo(Size));
    }

    [Test]
    public void Pop_RingAndWrapCounterWrapManyTimes_EveryChainRoundTrips()
    {
        // Size 7 (not a power of two) and chains of 1..3 slots: the wrap counter flips at varying
        // offsets and chains straddle the end of the ring.
        using var ring = new PackedRing(size: 7);
        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
        int wraps = 0;
        bool lastWrap = ring.Driver.AvailWrapCounter;
        for (int i = 0; i < 200; i++)
        {
            DriverBuffer[] buffers = [.. Enumerable.Range(0, 1 + (i % 3)).Select(k => PackedRing.Writable((ulong)k * 8, 8))];
            ushort id = ring.AddAndPublish(buffers);
            Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
            Assert.That(chain.Token, Is.EqualTo(new ChainToken(id, (ushort)buffers.Length)));
            ring.Queue.AddUsed(chain.Token, (uint)i);
            ring.Queue.FlushUsed();
            Assert.That(ring.Driver.TryGetUsed(out UsedBuffer used), Is.EqualTo(UsedBufferStatus.Ok));
            Assert.That(used, Is.EqualTo(new UsedBuffer(id, (uint)i)));
            if (ring.Driver.AvailWrapCounter != lastWrap)
            {
                wraps++;
                lastWrap = ring.Driver.AvailWrapCounter;
            }
        }

        Assert.That(wraps, Is.GreaterThan(50));
        Assert.That(ring.Queue.Status, Is.EqualTo(VirtqueueStatus.Ok));
    }

    [Test]
    public void TryPopChain_DescriptorMarkedForTheOtherWrap_IsNotAvailable()
    {
        using var ring = Activated();
        ring.WriteRaw(0, PackedRing.BufferBase, 8, 0, DescriptorFlags.Write, wrap: false);

        Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Empty));
    }

    [Test]
    public void TryPopChain_ChainTailWithWrongWrapBits_ReturnsWrapCounterMismatch()
    {
        using var ring = Activated();
        ring.WriteRaw(1, PackedRing.BufferBase, 8, 0, DescriptorFlags.Write, wrap: false);
        ring.WriteRaw(0, PackedRing.BufferBase, 8, 0, DescriptorFlags.Next);

        AssertFails(ring, VirtqueueStatus.WrapCounterMismatch);
    }

    [Test]
    public void TryPopChain_ZeroLength_ReturnsZeroLengthBuffer()
    {
        using var ring = Activated();
        ring.WriteRaw(0, PackedRing.BufferBase, 0, 0, DescriptorFlags.Write);

        AssertFails(ring, VirtqueueStatus.ZeroLengthBuffer);
    }

    [Test]
    public void TryPopChain_IdOutOfRange_ReturnsInvalidBufferId()
    {
        using var ring = Activated();
        ring.WriteRaw(0, PackedRing.BufferBase, 8, Size, DescriptorFlags.Write);

        AssertFails(ring, VirtqueueStatus.InvalidBufferId);
    }

    [Test]
    public void TryPopChain_IdAlreadyInFlight_ReturnsInvalidBufferId()
    {
        using var ring = Activated();
        ring.WriteRaw(0, PackedRing.BufferBase, 8, 3, DescriptorFlags.Write);
        Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Ok));
        ring.WriteRaw(1, PackedRing.BufferBase, 8, 3, DescriptorFlags.Write);

        AssertFails(ring, VirtqueueStatus.InvalidBufferId);
    }

    [Test]
    public void TryPopChain_ChainAsLongAsTheRingPlusOne_ReturnsChainTooLong()
    {
        using var ring = Activated();
        for (ushort i = Size; i-- > 0;)
        {
            ring.WriteRaw(i, PackedRing.BufferBase, 8, 0, DescriptorFlags.Next, wrap: true);
        }

        // Every slot says NEXT: after Size descriptors the walk must stop.
        AssertFails(ring, VirtqueueStatus.WrapCounterMismatch, VirtqueueStatus.ChainTooLong);
    }

    [Test]
    public void TryPopChain_ChainLongerThanDeviceLimit_ReturnsChainTooLong()
    {
        using var ring = new PackedRing(maxChainLength: 2);
        ring.Activate();
        ring.AddAndPublish(PackedRing.Readable(0, 8), PackedRing.Readable(8, 8), PackedRing.Writable(16, 8));

        AssertFails(ring, VirtqueueStatus.ChainTooLong);
    }

    [Test]
    public void TryPopChain_ReadableAfterWritable_ReturnsReadableAfterWritable()
    {
        using var ring = Activated();
        ring.AddAndPublish(PackedRing.Writable(0, 8), PackedRing.Readable(8, 8));

        AssertFails(ring, VirtqueueStatus.ReadableAfterWritable);
    }

    [TestCase(PackedRing.MemorySize, 8u)]
    [TestCase(ulong.MaxValue - 3, 8u)]
    public void TryPopChain_BufferOutsideMemory_ReturnsBufferOutOfRange(ulong address, uint length)
    {
        using var ring = Activated();
        ring.AddAndPublish(new DriverBuffer(address, length, true));

        AssertFails(ring, VirtqueueStatus.BufferOutOfRange);
    }

    [Test]
    public void TryPopChain_UndefinedFlagBit_ReturnsInvalidDescriptorFlags()
    {
        using var ring = Activated();
        ring.WriteRaw(0, PackedRing.BufferBase, 8, 0, (DescriptorFlags)0x8);

        AssertFails(ring, VirtqueueStatus.InvalidDescriptorFlags);
    }

    [Test]
    public void TryPopChain_IndirectWithoutFeature_ReturnsIndirectNotNegotiated()
    {
        using var ring = Activated();
        ring.WriteRaw(0, PackedRing.BufferBase, 16, 0, DescriptorFlags.Indirect);

        AssertFails(ring, VirtqueueStatus.IndirectNotNegotiated);
    }

    [Test]
    public void TryPopChain_IndirectInNextList_ReturnsIndirectWithNext()
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        WriteTable(ring, 0x1000, (PackedRing.BufferBase, 8u, DescriptorFlags.Write));
        ring.WriteRaw(1, PackedRing.BufferBase + 0x1000, 16, 0, DescriptorFlags.Indirect);
        ring.WriteRaw(0, PackedRing.BufferBase, 8, 0, DescriptorFlags.Next);

        AssertFails(ring, VirtqueueStatus.IndirectWithNext);
    }

    [TestCase(0u)]
    [TestCase(24u)]
    public void TryPopChain_IndirectTableBadLength_ReturnsIndirectTableInvalidLength(uint length)
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        ring.WriteRaw(0, PackedRing.BufferBase + 0x1000, length, 0, DescriptorFlags.Indirect);

        AssertFails(ring, VirtqueueStatus.IndirectTableInvalidLength);
    }

    [Test]
    public void TryPopChain_IndirectTableOutsideMemory_ReturnsIndirectTableOutOfRange()
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        ring.WriteRaw(0, PackedRing.MemorySize - 16, 32, 0, DescriptorFlags.Indirect);

        AssertFails(ring, VirtqueueStatus.IndirectTableOutOfRange);
    }

    [Test]
    public void TryPopChain_IndirectEntryInsideTable_ReturnsNestedIndirect()
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        WriteTable(ring, 0x1000, (PackedRing.BufferBase, 8u, DescriptorFlags.Write), (PackedRing.BufferBase + 0x2000, 16u, DescriptorFlags.Indirect));
        ring.WriteRaw(0, PackedRing.BufferBase + 0x1000, 32, 0, DescriptorFlags.Indirect);

        AssertFails(ring, VirtqueueStatus.NestedIndirect);
    }

    [Test]
    public void TryPopChain_IndirectTableOfThree_UsesOneSlotAndTheTablesBuffers()
    {
        using var ring = Activated(VirtqueueFeatures.IndirectDescriptors);
        Assert.That(ring.Driver.TryAddIndirect([PackedRing.Readable(0, 16), PackedRing.Readable(0x100, 16), PackedRing.Writable(0x200, 32)], out ushort id), Is.True);
        ring.Driver.Publish();

        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(chain.Token, Is.EqualTo(new ChainToken(id, 1)));
            Assert.That(chain.Readable.Length, Is.EqualTo(2));
            Assert.That(chain.WritableLength, Is.EqualTo(32u));
        }
    }

    [Test]
    public void TryPopChain_MoreSlotsOutstandingThanTheRing_ReturnsAvailIndexRunaway()
    {
        // A hostile driver re-marks slots the device still owns as available.
        using var ring = Activated();
        for (ushort i = 0; i < Size; i++)
        {
            ring.WriteRaw(i, PackedRing.BufferBase, 8, i, DescriptorFlags.Write, wrap: true);
            Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Ok));
        }

        ring.WriteRaw(0, PackedRing.BufferBase, 8, 0, DescriptorFlags.Write, wrap: false);

        AssertFails(ring, VirtqueueStatus.InvalidBufferId, VirtqueueStatus.AvailIndexRunaway);
    }

    [Test]
    public void FlushUsed_DriverEventModes_EnableAlwaysDisableNeverDescOnCrossing()
    {
        using var ring = Activated(VirtqueueFeatures.EventIndex);

        ring.Driver.WriteDriverEvent(0, PackedRingLayout.EventFlagsDisable);
        bool disabled = CompleteOne(ring);
        ring.Driver.WriteDriverEvent(0, PackedRingLayout.EventFlagsEnable);
        bool enabled = CompleteOne(ring);
        // Positions so far: used slots 0 and 1 written; ask for slot 3 in the current wrap.
        ring.Driver.WriteDriverEvent((ushort)(3 | (1 << 15)), PackedRingLayout.EventFlagsDesc);
        bool atSlot2 = CompleteOne(ring);
        bool atSlot3 = CompleteOne(ring);
        bool atSlot4 = CompleteOne(ring);

        Assert.That((disabled, enabled, atSlot2, atSlot3, atSlot4), Is.EqualTo((false, true, false, true, false)));
    }

    [Test]
    public void FlushUsed_DescModeAcrossTheWrap_NotifiesWhenThePositionIsCrossed()
    {
        using var ring = new PackedRing(size: 5, features: VirtqueueFeatures.EventIndex);
        ring.Activate();
        ring.Driver.WriteDriverEvent(0, PackedRingLayout.EventFlagsDisable);
        for (int i = 0; i < 4; i++)
        {
            CompleteOne(ring);   // slots 0..3 in wrap 1
        }

        ring.Driver.WriteDriverEvent(1, PackedRingLayout.EventFlagsDesc);   // slot 1 of the next pass (wrap 0)
        bool[] notified = [.. Enumerable.Range(0, 3).Select(_ => CompleteOne(ring))];   // slots 4, 0', 1'

        Assert.That(notified, Is.EqualTo(new[] { false, false, true }));
    }

    [Test]
    public void NotificationSuppression_DeviceSide_DisableThenEnableWithDescMode()
    {
        using var ring = Activated(VirtqueueFeatures.EventIndex);
        ring.Queue.DisableNotification();
        ushort disabled = ring.Driver.LoadDeviceEventFlags();
        ring.AddAndPublish(PackedRing.Writable(0, 8));
        bool kickWhileDisabled = ring.Driver.NeedsKick();
        bool moreWork = ring.Queue.EnableNotification();
        ring.Queue.TryPopChain(out _);
        ring.Queue.EnableNotification();
        ushort offWrap = ring.Driver.LoadDeviceEventOffWrap();
        ring.AddAndPublish(PackedRing.Writable(8, 8));
        bool kickForSlot1 = ring.Driver.NeedsKick();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(disabled, Is.EqualTo(PackedRingLayout.EventFlagsDisable));
            Assert.That(kickWhileDisabled, Is.False);
            Assert.That(moreWork, Is.True);
            Assert.That(ring.Driver.LoadDeviceEventFlags(), Is.EqualTo(PackedRingLayout.EventFlagsDesc));
            Assert.That(offWrap, Is.EqualTo((ushort)(1 | (1 << 15))));
            Assert.That(kickForSlot1, Is.True);
        }
    }

    [Test]
    public void NotificationSuppression_WithoutEventIdx_EnableModeKicksEveryTime()
    {
        using var ring = Activated();
        ring.Queue.EnableNotification();

        ring.AddAndPublish(PackedRing.Writable(0, 8));
        bool first = ring.Driver.NeedsKick();
        ring.AddAndPublish(PackedRing.Writable(8, 8));
        bool second = ring.Driver.NeedsKick();

        Assert.That((first, second, ring.Driver.LoadDeviceEventFlags()), Is.EqualTo((true, true, PackedRingLayout.EventFlagsEnable)));
    }

    [Test]
    public void RestoreState_KeepsPositionsAndWrapCounters_AndAcceptsReRegisteredChains()
    {
        using var ring = new PackedRing(size: 5);
        ring.Activate();
        for (int i = 0; i < 6; i++)
        {
            CompleteOne(ring);   // positions move past the end: wrap counters are now 0
        }

        ushort held = ring.AddAndPublish(PackedRing.Writable(0, 8));
        ring.Queue.TryPopChain(out DescriptorChain chain);
        ChainToken token = chain.Token;
        VirtqueueState saved = ring.Queue.SaveState();

        var restored = new Virtqueue(8);
        Assert.That(restored.RestoreState(ring.Memory, saved), Is.EqualTo(VirtqueueStatus.Ok));
        restored.RestoreInFlight(token);
        Assert.That(restored.AddUsed(token, 3), Is.EqualTo(VirtqueueStatus.Ok));
        restored.FlushUsed();
        ushort next = ring.AddAndPublish(PackedRing.Writable(8, 8));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(saved.AvailWrapCounter, Is.False);
            Assert.That(saved.UsedWrapCounter, Is.False);
            Assert.That(ring.Driver.TryGetUsed(out UsedBuffer used), Is.EqualTo(UsedBufferStatus.Ok));
            Assert.That(used, Is.EqualTo(new UsedBuffer(held, 3)));
            Assert.That(restored.TryPopChain(out DescriptorChain after), Is.EqualTo(VirtqueueStatus.Ok));
            Assert.That(after.Token.Id, Is.EqualTo(next));
        }
    }

    [Test]
    public void RestoreState_UsedAheadOfAvail_ReturnsInvalidState()
    {
        using var ring = new PackedRing(size: 5);
        var queue = new Virtqueue(8);

        VirtqueueStatus status = queue.RestoreState(ring.Memory, new VirtqueueState
        {
            Format = VirtqueueFormat.Packed,
            Features = VirtqueueFeatures.Packed,
            Ready = true,
            Config = ring.Driver.Config,
            NextAvail = 1,
            AvailWrapCounter = true,
            NextUsed = 3,
            UsedWrapCounter = true,
        });

        Assert.That(status, Is.EqualTo(VirtqueueStatus.InvalidState));
    }

    private static PackedRing Activated(VirtqueueFeatures features = VirtqueueFeatures.None)
    {
        var ring = new PackedRing(size: Size, features: features);
        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
        return ring;
    }

    private static bool CompleteOne(PackedRing ring)
    {
        ring.AddAndPublish(PackedRing.Writable(0, 8));
        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
        ring.Queue.AddUsed(chain.Token, 8);
        bool notify = ring.Queue.FlushUsed();
        Assert.That(ring.Driver.TryGetUsed(out _), Is.EqualTo(UsedBufferStatus.Ok));
        return notify;
    }

    private static void WriteTable(PackedRing ring, ulong offset, params (ulong Address, uint Length, DescriptorFlags Flags)[] entries)
    {
        byte[] bytes = new byte[16];
        for (int i = 0; i < entries.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, entries[i].Address);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), entries[i].Length);
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(12), 0);
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(14), (ushort)entries[i].Flags);
            ring.Memory.TryWrite(PackedRing.BufferBase + offset + ((ulong)i * 16), bytes);
        }
    }

    // The error is sticky and nothing is returned to the driver; `also` lists acceptable
    // alternatives where two checks legitimately race for the same broken ring.
    private static void AssertFails(PackedRing ring, VirtqueueStatus expected, VirtqueueStatus also = VirtqueueStatus.Ok)
    {
        VirtqueueStatus first = ring.Queue.TryPopChain(out DescriptorChain chain);
        int buffers = chain.Buffers.Length;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(first, also == VirtqueueStatus.Ok ? Is.EqualTo(expected) : Is.AnyOf(expected, also));
            Assert.That(buffers, Is.Zero);
            Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(first), "sticky");
            Assert.That(ring.Queue.FlushUsed(), Is.False);
            Assert.That(ring.Driver.TryGetUsed(out _), Is.EqualTo(UsedBufferStatus.Empty));
        }

        ring.Queue.Reset();
        using var fresh = new PackedRing(size: Size, features: ring.Features & ~VirtqueueFeatures.Packed);
        Assert.That(ring.Queue.Activate(fresh.Memory, fresh.Driver.Config, fresh.Features), Is.EqualTo(VirtqueueStatus.Ok));
        fresh.AddAndPublish(PackedRing.Writable(0, 8));
        Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Ok));
    }
}
