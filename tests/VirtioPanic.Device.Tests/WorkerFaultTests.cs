using Microsoft.Extensions.Logging.Testing;
using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;

namespace VirtioPanic.Device.Tests;

// Issue 19: an unexpected exception inside a queue worker's pass (here: the transport's interrupt
// path throws) stops that queue with DEVICE_NEEDS_RESET, is logged once, never reaches the thread
// that kicked, and never leaves the worker Running (which would make the device reset spin forever).
public sealed class WorkerFaultTests
{
    [Test]
    public void WorkerException_ContainedAsNeedsReset_QueueStopped_ResetCompletes_AndTheNextSessionWorks()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Events);
        TestDeviceContext context = rig.Context!;
        context.ThrowOnSignal = true;
        ulong first = rig.Buffer(8);
        rig.PostChain(0, new DriverBuffer(first, 8, DeviceWritable: true));

        Assert.That(() => rig.Device.Notify(0), Throws.Nothing, "the exception does not reach the vCPU thread");
        context.ThrowOnSignal = false;
        ulong second = rig.Buffer(8);
        rig.PostChain(0, new DriverBuffer(second, 8, DeviceWritable: true));
        rig.Device.Notify(0);

        Assert.Multiple(() =>
        {
            Assert.That(context.NeedsReset, Is.True);
            Assert.That(rig.Device.GetStatus().NeedsReset, Is.True);
            Assert.That(context.Signals(0), Is.EqualTo(1), "the faulted queue is not processed again in this session");
            Assert.That(rig.Device.GetStatus().Armed, Is.True, "the heartbeat before the fault was handled");
        });

        // Returns (a wedged worker would make it spin forever), and the device works again.
        rig.ResetDevice();
        rig.Activate(WatchdogFeatures.Events);
        Assert.That(rig.Heartbeat(), Is.EqualTo(1));
        Assert.That(rig.Device.GetStatus().NeedsReset, Is.False);
    }

    [Test]
    public void WorkerExceptions_AreLoggedOnce()
    {
        var logger = new FakeLogger();
        using var rig = new WatchdogRig();
        using var device = new WatchdogDevice(new WatchdogDeviceOptions(), rig.Time, logger);
        var context = new TestDeviceContext(rig.Memory, Virtio.Device.VirtioFeatures.Version1, rig.Queues) { ThrowOnSignal = true };
        for (int session = 0; session < 5; session++)
        {
            rig.SetUpQueue(0, 16, eventIndex: false);
            device.Activate(context);
            rig.PostChain(0, new DriverBuffer(rig.Buffer(8), 8, DeviceWritable: true));
            device.Notify(0);
            device.Reset();
            rig.Queues[0].Reset();
        }

        Assert.That(logger.Collector.GetSnapshot().Count(r => r.Id.Id == 5012), Is.EqualTo(1));
    }
}
