using VirtioPanic.GuestDriver.Tests.Devices;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.Transport;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.GuestDriver.Tests.Virtio;

// Every misbehaving-guest action against both transports: the host stays up, reports the problem
// (counters, DEVICE_NEEDS_RESET, refused status bits) and works again after a reset.
[TestFixture(VirtioTransportKind.Pci)]
[TestFixture(VirtioTransportKind.Mmio)]
public sealed class VirtioMisbehaviorTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(1);
    private readonly VirtioTransportKind _transport;

    public VirtioMisbehaviorTests(VirtioTransportKind transport) => _transport = transport;

    [TestCase(RingCorruption.AddressOutsideMemory)]
    [TestCase(RingCorruption.DescriptorOutOfRange)]
    [TestCase(RingCorruption.AvailIndexRunaway)]
    [TestCase(RingCorruption.LoopedChain)]
    public void CorruptRing_DeviceNeedsReset_ThenRecoversAfterReset(RingCorruption corruption)
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(EchoDevice.FeatureEcho), Is.EqualTo(VirtioInitResult.Ok));
        ulong buffer = rig.Guest.AllocateBuffer(64);

        DeviceStatus status = rig.Guest.Run(() =>
        {
            rig.Echo.Misbehave.CorruptRing(0, corruption, buffer);
            rig.Guest.Cpu.WaitUntil(() => rig.Echo.ConfigChangeCount > 0, s_timeout);
            return rig.Echo.ReadStatus();
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status & DeviceStatus.DeviceNeedsReset, Is.EqualTo(DeviceStatus.DeviceNeedsReset));
            Assert.That(rig.Echo.ConfigChangeCount, Is.GreaterThan(0), "DEVICE_NEEDS_RESET comes with a configuration-change notification");
            Assert.That(rig.Device.Completed(0), Is.Zero);
        }

        AssertRecovers(rig);
    }

    [Test]
    public void CorruptRing_AWaitOnTheQueueEndsAtTheNeedsResetInterrupt_NotAtItsTimeout()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(EchoDevice.FeatureEcho), Is.EqualTo(VirtioInitResult.Ok));
        ulong buffer = rig.Guest.AllocateBuffer(64);

        (bool completed, bool needsReset) = rig.Guest.Run(() =>
        {
            rig.Echo.Misbehave.CorruptRing(0, RingCorruption.AddressOutsideMemory, buffer);
            bool got = rig.Echo.Queue(0).WaitForUsed(TimeSpan.FromHours(1), out _, out _);
            return (got, rig.Echo.NeedsReset);
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(completed, Is.False);
            Assert.That(needsReset, Is.True);
            Assert.That(rig.Time.GetUtcNow(), Is.EqualTo(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero)), "no machine time passed");
        }

        AssertRecovers(rig);
        Assert.That(rig.Echo.NeedsReset, Is.False);
    }

    [Test]
    public void WrongAccessWidths_CountedAndIgnored_DeviceKeepsWorking()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(), Is.EqualTo(VirtioInitResult.Ok));
        long before = rig.GetInvalidAccessCount(InvalidAccessKind.WrongWidth);

        int wrong = rig.Guest.Run(rig.Echo.Misbehave.AccessWithWrongWidths);
        DeviceStatus status = rig.Guest.Run(rig.Echo.ReadStatus);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.GetInvalidAccessCount(InvalidAccessKind.WrongWidth) - before, Is.EqualTo(wrong));
            Assert.That(status, Is.EqualTo(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk), "the wrong-width status write was dropped");
        }

        int completed = rig.Guest.Run(() =>
        {
            var client = new EchoClient(rig.Guest, rig.Echo.Queue(0));
            client.RunToCompletion(50, s_timeout);
            return client.Completed.Count;
        });
        Assert.That(completed, Is.EqualTo(50));
    }

    [Test]
    public void SkipFeaturesOk_DriverOkRefused_DeviceNeverActivated()
    {
        using var rig = new EchoRig(_transport);

        DeviceStatus status = rig.Guest.Run(() => rig.Echo.Misbehave.InitializeSkippingFeaturesOk(new VirtioDriverOptions { Features = EchoDevice.FeatureEcho }));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status & (DeviceStatus.DriverOk | DeviceStatus.FeaturesOk), Is.EqualTo(DeviceStatus.None));
            Assert.That(rig.Device.Activations, Is.Zero);
            Assert.That(rig.InvalidAccessCount, Is.GreaterThan(0), "the refused status write is reported");
        }

        AssertRecovers(rig);
    }

    [Test]
    public void AcceptUnofferedFeature_FeaturesOkDoesNotStick()
    {
        using var rig = new EchoRig(_transport);

        DeviceStatus status = rig.Guest.Run(() => rig.Echo.Misbehave.AcceptFeatures(EchoDevice.FeatureEcho | EchoDevice.FeatureNeverOffered));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status & DeviceStatus.FeaturesOk, Is.EqualTo(DeviceStatus.None));
            Assert.That(rig.InvalidAccessCount, Is.GreaterThan(0));
        }

        AssertRecovers(rig);
    }

    [Test]
    public void ResetInTheMiddleOfIo_HostSurvives_AndRecovers()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(EchoDevice.FeatureEcho, size: 256), Is.EqualTo(VirtioInitResult.Ok));
        ulong buffer = rig.Guest.AllocateBuffer(64);

        int posted = rig.Guest.Run(() => rig.Echo.Misbehave.ResetDuringIo(0, buffer, 64, 256));
        DeviceStatus status = rig.Guest.Run(rig.Echo.ReadStatus);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(posted, Is.EqualTo(256));
            Assert.That(status, Is.EqualTo(DeviceStatus.None));
            Assert.That(rig.Device.Resets, Is.GreaterThanOrEqualTo(1));
            Assert.That(rig.Device.IsActive, Is.False);
        }

        AssertRecovers(rig);
    }

    [Test]
    public void FloodAQueue_EveryChainCompleted_AndTheDeviceStillAnswers()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(EchoDevice.FeatureEcho, size: 64), Is.EqualTo(VirtioInitResult.Ok));
        ulong buffer = rig.Guest.AllocateBuffer(64);

        long completed = rig.Guest.Run(() => rig.Echo.Misbehave.Flood(0, buffer, 64, 20_000));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(completed, Is.EqualTo(20_000));
            Assert.That(rig.Device.Completed(0), Is.EqualTo(20_000));
            Assert.That(rig.Guest.Run(rig.Echo.ReadStatus) & DeviceStatus.DeviceNeedsReset, Is.EqualTo(DeviceStatus.None));
        }

        AssertRecovers(rig);
    }

    [Test]
    public void NotifyADisabledQueue_DroppedAndCounted()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Guest.Run(() => rig.Echo.Initialize(new VirtioDriverOptions { Features = EchoDevice.FeatureEcho, Queues = [new QueueSetup(0, 16)] })), Is.EqualTo(VirtioInitResult.Ok));
        long before = rig.DroppedNotificationCount;

        rig.Guest.Run(() =>
        {
            rig.Echo.Misbehave.NotifyQueue(1);   // exists, never enabled
            rig.Echo.Misbehave.NotifyQueue(7);   // does not exist
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.DroppedNotificationCount - before, Is.EqualTo(_transport == VirtioTransportKind.Pci ? 1 : 2), "PCI has no doorbell for queue 7: that write is an invalid access instead");
            Assert.That(rig.Device.Completed(1), Is.Zero);
            Assert.That(rig.Guest.Run(rig.Echo.ReadStatus) & DeviceStatus.DeviceNeedsReset, Is.EqualTo(DeviceStatus.None));
        }

        AssertRecovers(rig);
    }

    // After a reset the guest initializes the device again and echoes go through.
    private static void AssertRecovers(EchoRig rig)
    {
        Assert.That(rig.Initialize(), Is.EqualTo(VirtioInitResult.Ok), "re-initialization after a reset");
        EchoClient client = rig.Guest.Run(() =>
        {
            var c = new EchoClient(rig.Guest, rig.Echo.Queue(0));
            c.RunToCompletion(100, s_timeout);
            return c;
        });
        using (Assert.EnterMultipleScope())
        {
            Assert.That(client.Completed, Has.Count.EqualTo(100));
            Assert.That(client.Mismatches, Is.Zero);
            Assert.That(rig.Guest.Cpu.Faults, Is.Empty);
        }
    }
}
