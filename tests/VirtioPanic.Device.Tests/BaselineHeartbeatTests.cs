using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Tests;

// The Cloud Hypervisor-compatible protocol with no device-specific feature negotiated (spec §6.2).
public sealed class BaselineHeartbeatTests
{
    [Test]
    [Category("Conformance")]
    public void WDT_DEV_4_Heartbeat_WritesOneAndReturnsFirstBufferLength()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);

        Assert.That(rig.Heartbeat(length: 8), Is.EqualTo(1));
        Assert.That(rig.Context!.Signals(0), Is.EqualTo(1), "used-buffer notification");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_4_HeartbeatOfTwoWritableBuffers_UsedLengthIsFirstBufferOnly()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        ulong first = rig.Buffer(4);
        ulong second = rig.Buffer(32);
        rig.PostChain(0, new DriverBuffer(first, 4, true), new DriverBuffer(second, 32, true));

        rig.Device.Notify(0);

        UsedBuffer used = rig.TakeUsed(0);
        byte[] value = new byte[1];
        rig.Memory.TryRead(first, value);
        Assert.Multiple(() =>
        {
            Assert.That(used.Length, Is.EqualTo(4u));
            Assert.That(value[0], Is.EqualTo(1));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_5_FirstHeartbeat_ArmsWithDefaultTimeout()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        Assert.That(rig.Device.GetStatus().Armed, Is.False, "not armed before the first heartbeat");

        rig.Heartbeat();

        WatchdogDeviceStatus status = rig.Device.GetStatus();
        WatchdogArmedEvent armed = rig.Drain<WatchdogArmedEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(status.Armed, Is.True);
            Assert.That(status.Timeout, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(armed.Timeout, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(armed.ByHeartbeat, Is.True);
            Assert.That(armed.DeviceId, Is.EqualTo("watchdog0"));
            Assert.That(armed.Sequence, Is.GreaterThan(0));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_5_LaterHeartbeats_RestartTheCountdownWithoutRearming()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        rig.Heartbeat();
        rig.Time.Advance(TimeSpan.FromSeconds(15));

        rig.Heartbeat();
        rig.Time.Advance(TimeSpan.FromSeconds(15));
        rig.Heartbeat();
        rig.Time.Advance(TimeSpan.FromSeconds(15));

        List<WatchdogEvent> events = rig.DrainEvents();
        Assert.Multiple(() =>
        {
            Assert.That(events.OfType<WatchdogArmedEvent>().Count(), Is.EqualTo(1));
            Assert.That(events.OfType<WatchdogExpiredEvent>(), Is.Empty, "pinged every 15 s with a 20 s timeout");
            Assert.That(rig.Device.GetStatus().TimeLeft, Is.EqualTo(TimeSpan.FromSeconds(5)));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_6_ReadableFirstBufferWithoutControl_NotReturnedAndNeedsReset()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        ulong request = rig.Buffer(16);
        ulong response = rig.Buffer(16);
        rig.PostChain(0, new DriverBuffer(request, 16, false), new DriverBuffer(response, 16, true));

        rig.Device.Notify(0);

        Assert.Multiple(() =>
        {
            Assert.That(rig.TryTakeUsed(0, out _), Is.False, "the chain is not returned");
            Assert.That(rig.Context!.NeedsReset, Is.True);
            Assert.That(rig.Device.GetStatus().NeedsReset, Is.True);
            Assert.That(rig.Drain<GuestProtocolErrorEvent>().Single().Error, Is.EqualTo(WatchdogProtocolError.HeartbeatRejected));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_6_AfterRejection_FurtherHeartbeatsAreNotProcessedUntilReset()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        ulong request = rig.Buffer(16);
        rig.PostChain(0, new DriverBuffer(request, 16, false));
        rig.Device.Notify(0);

        ulong heartbeat = rig.Buffer(8);
        rig.PostChain(0, new DriverBuffer(heartbeat, 8, true));
        rig.Device.Notify(0);

        byte[] value = new byte[1];
        rig.Memory.TryRead(heartbeat, value);
        Assert.Multiple(() =>
        {
            Assert.That(rig.TryTakeUsed(0, out _), Is.False);
            Assert.That(value[0], Is.EqualTo(0), "not written");
            Assert.That(rig.Device.GetStatus().Armed, Is.False);
        });

        rig.ResetDevice();
        rig.Activate(WatchdogFeatures.None);
        Assert.That(rig.Heartbeat(), Is.EqualTo(1), "works again after reset");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_32_ZeroLengthHeartbeat_IsRingErrorAndNeedsReset()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        rig.PostChain(0, new DriverBuffer(rig.Buffer(8), 0, true));

        rig.Device.Notify(0);

        GuestProtocolErrorEvent error = rig.Drain<GuestProtocolErrorEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(rig.TryTakeUsed(0, out _), Is.False);
            Assert.That(rig.Context!.NeedsReset, Is.True);
            Assert.That(error.Error, Is.EqualTo(WatchdogProtocolError.RingError));
            Assert.That(error.Detail, Is.EqualTo(nameof(VirtqueueStatus.ZeroLengthBuffer)));
        });
    }

    [Test]
    public void Heartbeat_BuffersMadeAvailableBeforeDriverOk_AreProcessedAtActivation()
    {
        using var rig = new WatchdogRig();
        rig.SetUpQueue(0, 16, eventIndex: false);
        ulong buffer = rig.Buffer(8);
        rig.PostChain(0, new DriverBuffer(buffer, 8, true));
        var context = new TestDeviceContext(rig.Memory, Virtio.Device.VirtioFeatures.Version1, rig.Queues);

        rig.Device.Activate(context);

        Assert.Multiple(() =>
        {
            Assert.That(rig.TakeUsed(0).Length, Is.EqualTo(8u));
            Assert.That(rig.Device.GetStatus().Armed, Is.True);
        });
    }

    [Test]
    public void Heartbeat_WithEventIndex_Works()
    {
        using var rig = new WatchdogRig();
        rig.Activate(WatchdogFeatures.None, eventIndex: true);

        Assert.That(rig.Heartbeat(), Is.EqualTo(1));
        Assert.That(rig.Heartbeat(), Is.EqualTo(1));
    }
}
