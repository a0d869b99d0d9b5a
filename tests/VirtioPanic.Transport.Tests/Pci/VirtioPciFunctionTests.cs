using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;

namespace VirtioPanic.Transport.Tests.Pci;

// PCI-specific behaviour of VirtioPciFunction, one concern per partial file.
public sealed partial class VirtioPciFunctionTests
{
    private const DeviceStatus FeaturesOk = DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk;
    private const DeviceStatus Live = FeaturesOk | DeviceStatus.DriverOk;

    private GuestMemory _memory = null!;
    private GuestAllocator _allocator = null!;
    private FakeDevice _device = null!;
    private RecordingInterruptSink _sink = null!;
    private VirtioPciFunction _function = null!;
    private PciTestDriver _driver = null!;

    [SetUp]
    public void SetUp()
    {
        _memory = GuestMemory.CreateAnonymous(16 << 20);
        _allocator = new GuestAllocator(_memory, 0x1_0000, 8 << 20);
        _device = new FakeDevice();
        _sink = new RecordingInterruptSink();
        _function = new VirtioPciFunction(_device, _memory, _sink);
        _driver = new PciTestDriver(_function, _sink);
    }

    [TearDown]
    public void TearDown() => _memory.Dispose();

    [Test]
    public void Constructor_VirtioIdAbove63_Throws()
    {
        Assert.That(() => new VirtioPciFunction(new FakeDevice(deviceId: 64), _memory, _sink), Throws.ArgumentException);
    }

    [Test]
    public void Constructor_RevisionZero_Throws()
    {
        Assert.That(() => new VirtioPciFunction(_device, _memory, _sink, new VirtioPciFunctionOptions { RevisionId = 0 }), Throws.ArgumentException);
    }

    private void Negotiate(ulong features = VirtioFeatures.Version1 | VirtioFeatures.EventIndex | VirtioFeatures.RingReset)
    {
        _driver.WriteStatus(0);
        _driver.WriteStatus(DeviceStatus.Acknowledge);
        _driver.WriteStatus(DeviceStatus.Acknowledge | DeviceStatus.Driver);
        _driver.WriteDriverFeatures(0, (uint)features);
        _driver.WriteDriverFeatures(1, (uint)(features >> 32));
        _driver.WriteStatus(FeaturesOk);
        Assert.That(_driver.ReadStatus(), Is.EqualTo(FeaturesOk));
    }

    private SplitRingDriver SetupQueue(int queue, ushort size)
    {
        SplitRingDriver ring = SplitRingDriver.Allocate(_allocator, size, eventIndex: true);
        _driver.SelectQueue((uint)queue);
        _driver.WriteQueueSize(size);
        _driver.WriteQueueAddresses(ring.Config.DescriptorArea, ring.Config.DriverArea, ring.Config.DeviceArea);
        _driver.WriteQueueReady(1);
        Assert.That(_driver.ReadQueueReady(), Is.True);
        return ring;
    }

    private SplitRingDriver BringUp(ushort vector = Common.NoVector)
    {
        Negotiate();
        SplitRingDriver ring = SetupQueue(0, 16);
        _driver.WriteMem16(_driver.CommonConfig + Common.QueueMsixVector, vector);
        _driver.WriteStatus(Live);
        return ring;
    }

    private void PublishAndKick(SplitRingDriver ring, uint length = 16)
    {
        ulong buffer = _allocator.Allocate(length);
        Assert.That(ring.TryAdd([new DriverBuffer(buffer, length, DeviceWritable: true)], out _), Is.True);
        ring.Publish();
        _driver.Kick(0);
    }

    private void AssertWorks()
    {
        SplitRingDriver ring = BringUp();
        PublishAndKick(ring);
        Assert.That(ring.TryGetUsed(out UsedBuffer used), Is.EqualTo(UsedBufferStatus.Ok));
        Assert.That(used.Length, Is.EqualTo(16u));
    }
}
