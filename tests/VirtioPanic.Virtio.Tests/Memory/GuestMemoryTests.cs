using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Tests.Memory;

public sealed class GuestMemoryTests
{
    private const ulong Mib = 1024 * 1024;

    [Test]
    public void Constructor_OverlappingRegions_Throws()
    {
        using GuestMemoryRegion a = GuestMemoryRegion.AllocateAnonymous(0, Mib);
        using GuestMemoryRegion b = GuestMemoryRegion.AllocateAnonymous(Mib / 2, Mib);

        Assert.That(() => new GuestMemory([a, b], ownsRegions: false), Throws.ArgumentException);
    }

    [Test]
    public void TryGetSlice_InsideRegion_ReturnsSliceAtThatAddress()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(Mib, guestAddress: 0x10000);

        GuestMemoryStatus status = memory.TryGetSlice(0x10010, 32, out GuestMemorySlice slice);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status, Is.EqualTo(GuestMemoryStatus.Ok));
            Assert.That(slice.GuestAddress, Is.EqualTo(0x10010UL));
            Assert.That(slice.Length, Is.EqualTo(32u));
        }
    }

    [TestCase(0x0FFFFUL, 1UL, GuestMemoryStatus.OutOfRange, TestName = "TryGetSlice_BelowRegion_ReturnsOutOfRange")]
    [TestCase(0x10000UL + Mib, 1UL, GuestMemoryStatus.OutOfRange, TestName = "TryGetSlice_AtRegionEnd_ReturnsOutOfRange")]
    [TestCase(0x10000UL + Mib - 4, 8UL, GuestMemoryStatus.OutOfRange, TestName = "TryGetSlice_RunsOffTheEnd_ReturnsOutOfRange")]
    [TestCase(ulong.MaxValue - 3, 8UL, GuestMemoryStatus.AddressOverflow, TestName = "TryGetSlice_AddressPlusLengthOverflows_ReturnsAddressOverflow")]
    [TestCase(0x10000UL, 1UL + uint.MaxValue, GuestMemoryStatus.TooLong, TestName = "TryGetSlice_LongerThan4GiB_ReturnsTooLong")]
    public void TryGetSlice_BadRange_ReturnsTypedError(ulong address, ulong length, GuestMemoryStatus expected)
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(Mib, guestAddress: 0x10000);

        GuestMemoryStatus status = memory.TryGetSlice(address, length, out GuestMemorySlice slice);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status, Is.EqualTo(expected));
            Assert.That(slice.IsEmpty, Is.True);
        }
    }

    [Test]
    public void TryGetSlice_StraddlesAdjacentRegions_ReturnsCrossesRegionBoundary()
    {
        using var memory = new GuestMemory(GuestMemoryRegion.AllocateAnonymous(0, Mib), GuestMemoryRegion.AllocateAnonymous(Mib, Mib));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(memory.TryGetSlice(Mib - 8, 16, out _), Is.EqualTo(GuestMemoryStatus.CrossesRegionBoundary));
            Assert.That(memory.TryGetSlice(Mib - 8, 8, out _), Is.EqualTo(GuestMemoryStatus.Ok));
            Assert.That(memory.TryGetSlice(Mib, 8, out _), Is.EqualTo(GuestMemoryStatus.Ok));
        }
    }

    [Test]
    public void TryGetSlice_InHoleBetweenRegions_ReturnsOutOfRange()
    {
        using var memory = new GuestMemory(GuestMemoryRegion.AllocateAnonymous(0, Mib), GuestMemoryRegion.AllocateAnonymous(4 * Mib, Mib));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(memory.TryGetSlice(2 * Mib, 4, out _), Is.EqualTo(GuestMemoryStatus.OutOfRange));
            Assert.That(memory.TryGetSlice(Mib - 4, 8, out _), Is.EqualTo(GuestMemoryStatus.OutOfRange));
            Assert.That(memory.TryGetSlice(4 * Mib + 16, 4, out _), Is.EqualTo(GuestMemoryStatus.Ok));
        }
    }

    [Test]
    public void TryWriteUInt32_ThenTryReadUInt32_RoundTripsLittleEndian()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(Mib);

        Assert.That(memory.TryWriteUInt32(0x100, 0x11223344), Is.True);
        Assert.That(memory.TryReadUInt32(0x100, out uint value), Is.True);
        byte[] raw = new byte[4];
        Assert.That(memory.TryRead(0x100, raw), Is.True);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(value, Is.EqualTo(0x11223344u));
            Assert.That(raw, Is.EqualTo(new byte[] { 0x44, 0x33, 0x22, 0x11 }));
        }
    }

    [Test]
    public void TryWrite_OutsideMemory_WritesNothingAndReturnsFalse()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(Mib);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(memory.TryWrite(Mib - 2, [1, 2, 3, 4]), Is.False);
            Assert.That(memory.TryReadUInt16(Mib - 2, out ushort tail), Is.True);
            Assert.That(tail, Is.Zero);
            Assert.That(memory.TryReadUInt64(Mib - 4, out _), Is.False);
        }
    }

    [Test]
    public void TryLoadUInt16Acquire_MisalignedAddress_ReturnsMisaligned()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(Mib);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(memory.TryLoadUInt16Acquire(0x101, out _), Is.EqualTo(GuestMemoryStatus.Misaligned));
            Assert.That(memory.TryStoreUInt16Release(0x103, 7), Is.EqualTo(GuestMemoryStatus.Misaligned));
            Assert.That(memory.TryStoreUInt16Release(0x102, 7), Is.EqualTo(GuestMemoryStatus.Ok));
            Assert.That(memory.TryLoadUInt16Acquire(0x102, out ushort v), Is.EqualTo(GuestMemoryStatus.Ok));
            Assert.That(v, Is.EqualTo((ushort)7));
        }
    }

    [Test]
    public void TryLoadUInt32Acquire_AndTryStoreUInt32Release_RoundTripLittleEndian_AndRefuseMisalignedAddresses()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(Mib);
        byte[] bytes = new byte[4];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(memory.TryStoreUInt32Release(0x104, 0x4D4D4F43), Is.EqualTo(GuestMemoryStatus.Ok));
            Assert.That(memory.TryRead(0x104, bytes), Is.True);
            Assert.That(bytes, Is.EqualTo("COMM"u8.ToArray()), "little-endian in guest memory");
            Assert.That(memory.TryLoadUInt32Acquire(0x104, out uint value), Is.EqualTo(GuestMemoryStatus.Ok));
            Assert.That(value, Is.EqualTo(0x4D4D4F43u));
            Assert.That(memory.TryLoadUInt32Acquire(0x102, out _), Is.EqualTo(GuestMemoryStatus.Misaligned));
            Assert.That(memory.TryStoreUInt32Release(0x101, 1), Is.EqualTo(GuestMemoryStatus.Misaligned));
            Assert.That(memory.TryLoadUInt32Acquire(Mib - 2, out _), Is.Not.EqualTo(GuestMemoryStatus.Ok));
        }
    }

    [Test]
    public void SliceLoadUInt32Acquire_AtAnOddAddress_ReadsTheValue_AndChecksTheRange()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(Mib);
        Assert.That(memory.TryGetSlice(0x201, 8, out GuestMemorySlice slice), Is.EqualTo(GuestMemoryStatus.Ok));

        slice.StoreUInt32Release(1, 0xA1B2C3D4);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(memory.TryReadUInt32(0x202, out uint plain), Is.True);
            Assert.That(plain, Is.EqualTo(0xA1B2C3D4u));
            Assert.That(slice.LoadUInt32Acquire(1), Is.EqualTo(0xA1B2C3D4u));
            Assert.That(() => slice.LoadUInt32Acquire(5), Throws.TypeOf<ArgumentOutOfRangeException>());
        }
    }

    [Test]
    public void TryGetSpan_SliceOf4GiBMinusOne_ReturnsFalseInsteadOfThrowing_AndASmallSliceWorks()
    {
        // A descriptor may legally describe 2^32 - 1 bytes; the region is reserved, never touched.
        using GuestMemory memory = GuestMemory.CreateAnonymous(0x1_0000_1000);
        Assert.That(memory.TryGetSlice(0x800, uint.MaxValue, out GuestMemorySlice huge), Is.EqualTo(GuestMemoryStatus.Ok));
        Assert.That(memory.TryGetSlice(0x800, 16, out GuestMemorySlice small), Is.EqualTo(GuestMemoryStatus.Ok));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(huge.TryGetSpan(out Span<byte> none), Is.False);
            Assert.That(none.IsEmpty, Is.True);
            Assert.That(small.TryGetSpan(out Span<byte> span), Is.True);
            Assert.That(span.Length, Is.EqualTo(16));
            Assert.That(() => huge.Span.Length, Throws.InvalidOperationException, "the throwing accessor is unchanged");
        }
    }

    [Test]
    public void AllocateAnonymous_OnLinux_IsGuardedAndZeroed()
    {
        using GuestMemoryRegion region = GuestMemoryRegion.AllocateAnonymous(0, 3 * 4096 + 5);
        using var memory = new GuestMemory([region], ownsRegions: false);
        byte[] all = new byte[region.Size];

        Assert.That(memory.TryRead(0, all), Is.True);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(region.IsGuarded, Is.EqualTo(OperatingSystem.IsLinux()));
            Assert.That(all.All(b => b == 0), Is.True);
        }
    }

    [Test]
    public void CreateShared_SecondMappingOfTheMemfd_SeesTheSameBytes()
    {
        using GuestMemoryRegion shared = GuestMemoryRegion.CreateShared(0x4000_0000, Mib);
        using GuestMemoryRegion alias = GuestMemoryRegion.MapFile(0, shared.SharedFileHandle!, 0, Mib);
        using var first = new GuestMemory([shared], ownsRegions: false);
        using var second = new GuestMemory([alias], ownsRegions: false);

        Assert.That(first.TryWriteUInt64(0x4000_0000 + 0x800, 0xDEADBEEFCAFEF00D), Is.True);
        Assert.That(second.TryReadUInt64(0x800, out ulong seen), Is.True);

        Assert.That(seen, Is.EqualTo(0xDEADBEEFCAFEF00D));
    }

    [Test]
    public void FromHostMemory_MisalignedAgainstGuestAddress_Throws()
    {
        using GuestMemoryRegion backing = GuestMemoryRegion.AllocateAnonymous(0, 4096);

        Assert.That(() => GuestMemoryRegion.FromHostMemory(0x1000, backing.HostAddress + 1, 64), Throws.ArgumentException);
    }

    [Test]
    public void Slice_OffsetPastEnd_ThrowsBecauseThatIsAHostBug()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(Mib);
        Assert.That(memory.TryGetSlice(0, 16, out GuestMemorySlice slice), Is.EqualTo(GuestMemoryStatus.Ok));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(() => slice.Slice(8, 9), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => slice.ReadUInt64(9), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(slice.Slice(8, 8).Length, Is.EqualTo(8u));
        }
    }
}
