using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// Queue configuration is validated once, when the queue is enabled (virtio 1.2 §2.7 alignment and
// size table; ring-safety checklist item 1).
public sealed class SplitVirtqueueActivationTests
{
    [Test]
    public void Activate_ValidConfig_IsReadyWithDriverSize()
    {
        using var ring = new SplitRing(size: 16);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
            Assert.That(ring.Queue.IsReady, Is.True);
            Assert.That(ring.Queue.Size, Is.EqualTo((ushort)16));
            Assert.That(ring.Queue.Status, Is.EqualTo(VirtqueueStatus.Ok));
        }
    }

    [TestCase((ushort)0)]
    [TestCase((ushort)3)]
    [TestCase((ushort)24)]
    [TestCase((ushort)32)]
    public void Activate_BadSize_ReturnsInvalidSizeAndStaysInactive(ushort size)
    {
        using var ring = new SplitRing(size: 16);
        VirtqueueConfig config = ring.Driver.Config with { Size = size };

        VirtqueueStatus status = ring.Queue.Activate(ring.Memory, config, VirtqueueFeatures.None);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status, Is.EqualTo(VirtqueueStatus.InvalidSize));
            Assert.That(ring.Queue.IsReady, Is.False);
            Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.NotReady));
        }
    }

    [TestCase(8UL, 0UL, 0UL, VirtqueueStatus.MisalignedDescriptorArea)]
    [TestCase(0UL, 1UL, 0UL, VirtqueueStatus.MisalignedDriverArea)]
    [TestCase(0UL, 0UL, 2UL, VirtqueueStatus.MisalignedDeviceArea)]
    public void Activate_MisalignedArea_ReturnsWhichArea(ulong descShift, ulong availShift, ulong usedShift, VirtqueueStatus expected)
    {
        using var ring = new SplitRing(size: 16);
        VirtqueueConfig c = ring.Driver.Config;
        var config = new VirtqueueConfig(c.Size, c.DescriptorArea + descShift, c.DriverArea + availShift, c.DeviceArea + usedShift);

        Assert.That(ring.Queue.Activate(ring.Memory, config, VirtqueueFeatures.None), Is.EqualTo(expected));
    }

    [TestCase(0, VirtqueueStatus.DescriptorAreaOutOfRange)]
    [TestCase(1, VirtqueueStatus.DriverAreaOutOfRange)]
    [TestCase(2, VirtqueueStatus.DeviceAreaOutOfRange)]
    public void Activate_AreaRunsOffGuestMemory_ReturnsWhichArea(int area, VirtqueueStatus expected)
    {
        using var ring = new SplitRing(size: 16);
        VirtqueueConfig c = ring.Driver.Config;
        ulong nearEnd = SplitRing.MemorySize - 16;   // aligned for every area, but too short for any
        var config = area switch
        {
            0 => c with { DescriptorArea = nearEnd },
            1 => c with { DriverArea = nearEnd },
            _ => c with { DeviceArea = nearEnd },
        };

        Assert.That(ring.Queue.Activate(ring.Memory, config, VirtqueueFeatures.None), Is.EqualTo(expected));
    }

    [Test]
    public void Activate_UsedRingStraddlesTwoRegions_ReturnsDeviceAreaOutOfRange()
    {
        const ulong half = 8UL << 20;
        var memory = new GuestMemory(GuestMemoryRegion.AllocateAnonymous(0, half), GuestMemoryRegion.AllocateAnonymous(half, half));
        using var ring = new SplitRing(size: 16, memory: memory);
        VirtqueueConfig config = ring.Driver.Config with { DeviceArea = half - 64 };   // 6 + 8*16 bytes do not fit below the boundary

        Assert.That(ring.Queue.Activate(ring.Memory, config, VirtqueueFeatures.None), Is.EqualTo(VirtqueueStatus.DeviceAreaOutOfRange));
    }

    [Test]
    public void Activate_SizeAboveDeviceMaximum_ReturnsInvalidSize()
    {
        using var ring = new SplitRing(size: 16);
        var small = new Virtqueue(maxSize: 8);

        Assert.That(small.Activate(ring.Memory, ring.Driver.Config, VirtqueueFeatures.None), Is.EqualTo(VirtqueueStatus.InvalidSize));
    }

    [Test]
    public void Constructor_MaxSizeNotPowerOfTwo_Throws()
    {
        using (Assert.EnterMultipleScope())
        {
            Assert.That(() => new Virtqueue(0), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => new Virtqueue(100), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(new Virtqueue(32768).MaxSize, Is.EqualTo((ushort)32768));
        }
    }

    [Test]
    public void TryPopChain_NotActivated_ReturnsNotReady()
    {
        var queue = new Virtqueue(16);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.NotReady));
            Assert.That(queue.AddUsed(new ChainToken(0, 1), 0), Is.EqualTo(VirtqueueStatus.NotReady));
            Assert.That(queue.FlushUsed(), Is.False);
            Assert.That(queue.EnableNotification(), Is.False);
        }
    }

    [Test]
    public void Reset_AfterActivation_StopsTouchingTheRing()
    {
        using var ring = new SplitRing(size: 16);
        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
        ring.AddAndPublish(SplitRing.Writable(0, 8));

        ring.Queue.Reset();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.NotReady));
            Assert.That(ring.Queue.FlushUsed(), Is.False);
            Assert.That(ring.Driver.LoadUsedIndex(), Is.Zero);
            Assert.That(ring.Queue.IsReady, Is.False);
        }
    }
}
