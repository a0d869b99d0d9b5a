using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.GuestDriver.Watchdog;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.GuestDriver.Tests.Watchdog;

// Misbehaving guests against the real watchdog device: the host reports them as typed events and
// the device works again after a reset.
public sealed class WatchdogMisbehaviorTests
{
    [Test]
    public void CorruptEventQueue_ReportedAsARingError_PanicEventsStillWork_ThenRecovers()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe();
        ulong buffer = rig.Guest.AllocateBuffer(64);

        DeviceStatus status = rig.Run(() =>
        {
            rig.VirtioDevice.Misbehave.CorruptRing(1, RingCorruption.DescriptorOutOfRange, buffer);
            return rig.VirtioDevice.ReadStatus();
        });
        bool minimal = rig.Run(() => WatchdogDriver.ReportMinimal(rig.VirtioDevice, WatchdogPanicEvent.Panicked));
        WatchdogDriver again = rig.Probe();
        PanicReportPath path = rig.Run(() => again.Panic(new PanicReport { Message = "after recovery" }));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status & DeviceStatus.DeviceNeedsReset, Is.EqualTo(DeviceStatus.DeviceNeedsReset));
            Assert.That(rig.EventsOf<GuestProtocolErrorEvent>().Select(e => e.Error), Does.Contain(WatchdogProtocolError.RingError));
            Assert.That(minimal, Is.True, "panic_events works after DEVICE_NEEDS_RESET");
            Assert.That(path, Is.EqualTo(PanicReportPath.EventRecord));
            Assert.That(rig.EventsOf<GuestPanickedEvent>().Select(e => e.Source), Is.EqualTo(new[] { WatchdogEventSource.ConfigField, WatchdogEventSource.EventRecord }));
            Assert.That(rig.EventsOf<DriverResetEvent>(), Is.Not.Empty);
            Assert.That(driver.Features, Is.EqualTo(WatchdogFeatures.All & ~WatchdogFeatures.VcpuStall), "every bit offered (VCPU_STALL is offered only with a vCPU count)");
        }
    }

    [Test]
    public void ReadableHeartbeatWithoutControl_DeviceNeedsReset_AndTheDriverSeesADeviceError()
    {
        using var rig = new WatchdogRig();
        rig.Run(() => BaselineWatchdogDriver.Probe(rig.VirtioDevice));
        ulong buffer = rig.Guest.AllocateBuffer(16);

        Task<(DeviceStatus, bool)> heartbeat = rig.Guest.RunAsync(() =>
        {
            GuestVirtqueue queue = rig.VirtioDevice.Queue(0);
            bool returned = queue.Submit([new Rings.DriverBuffer(buffer, 16, DeviceWritable: false)], TimeSpan.FromMilliseconds(100)) is not null;
            return (rig.VirtioDevice.ReadStatus(), returned);
        });
        rig.Advance(TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(100));
        (DeviceStatus status, bool answered) = rig.Guest.Cpu.Join(heartbeat);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status & DeviceStatus.DeviceNeedsReset, Is.EqualTo(DeviceStatus.DeviceNeedsReset));
            Assert.That(answered, Is.False, "the device neither writes nor returns the chain");
            Assert.That(rig.EventsOf<GuestProtocolErrorEvent>().Select(e => e.Error), Does.Contain(WatchdogProtocolError.HeartbeatRejected));
            Assert.That(rig.Run(() => BaselineWatchdogDriver.Probe(rig.VirtioDevice).Heartbeat()), Is.True, "works again after the reset");
        }
    }
}
