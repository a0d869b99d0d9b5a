using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Tests;

// Ring errors stop only their queue (spec §6.9) and the device bounds its work (WDT-DEV-33).
public sealed class RingErrorTests
{
    [Test]
    [Category("Conformance")]
    public void WDT_DEV_32_RingErrorOnWatchdogQueue_OtherPathsKeepWorking()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Events | WatchdogFeatures.PanicConfig);
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 256);
        rig.Drivers[0]!.WriteAvailEntry(rig.Drivers[0]!.AvailIndex, 999); // head out of range
        rig.Drivers[0]!.StoreAvailIndex((ushort)(rig.Drivers[0]!.AvailIndex + 1));

        rig.Device.Notify(0);

        GuestProtocolErrorEvent error = rig.Drain<GuestProtocolErrorEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(error.Error, Is.EqualTo(WatchdogProtocolError.RingError));
            Assert.That(error.Detail, Is.EqualTo(nameof(VirtqueueStatus.HeadIndexOutOfRange)));
            Assert.That(error.QueueIndex, Is.EqualTo(0));
            Assert.That(rig.Context!.NeedsResetCount, Is.EqualTo(1));
        });

        rig.Commit(posted, RecordSpec.Panic("still heard"));
        rig.WriteConfig32(0x08, 2);
        Assert.That(rig.DrainEvents().Select(e => e.Kind), Is.EqualTo(new[] { WatchdogEventKind.GuestPanicked, WatchdogEventKind.GuestCrashLoaded }));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_32_RingErrorOnEventQueue_WatchdogQueueKeepsWorking()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Events);
        ulong a = rig.Buffer(8);
        ulong b = rig.Buffer(128);
        rig.PostChain(1, new DriverBuffer(a, 8, true), new DriverBuffer(b, 128, false)); // readable after writable

        rig.Device.Notify(1);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Drain<GuestProtocolErrorEvent>().Single().Detail, Is.EqualTo(nameof(VirtqueueStatus.ReadableAfterWritable)));
            Assert.That(rig.Context!.NeedsReset, Is.True);
            Assert.That(rig.Heartbeat(), Is.EqualTo(1));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_33_FloodOfHeartbeats_AllProcessedWithOneNotification()
    {
        using var rig = new WatchdogRig();
        rig.Activate(WatchdogFeatures.None, size: 256);
        var buffers = new List<ulong>();
        for (int i = 0; i < 256; i++)
        {
            ulong buffer = rig.Buffer(8);
            buffers.Add(buffer);
            Assert.That(rig.Drivers[0]!.TryAdd([new DriverBuffer(buffer, 8, true)], out _), Is.True);
        }

        rig.Drivers[0]!.Publish();
        rig.Device.Notify(0);

        // Work beyond the per-turn budget continues on the thread pool without another kick.
        SpinWait.SpinUntil(() => rig.Drivers[0]!.LoadUsedIndex() == 256, TimeSpan.FromSeconds(10));
        int used = 0;
        while (rig.TryTakeUsed(0, out _))
        {
            used++;
        }

        Assert.That(used, Is.EqualTo(256));
    }

    [Test]
    public void ConcurrentNotifications_FromManyThreads_EveryHeartbeatAnsweredOnce()
    {
        using var rig = new WatchdogRig();
        rig.Activate(WatchdogFeatures.None, size: 256);
        for (int i = 0; i < 200; i++)
        {
            Assert.That(rig.Drivers[0]!.TryAdd([new DriverBuffer(rig.Buffer(8), 8, true)], out _), Is.True);
        }

        rig.Drivers[0]!.Publish();
        Parallel.For(0, 64, _ => rig.Device.Notify(0));

        SpinWait.SpinUntil(() => rig.Drivers[0]!.LoadUsedIndex() == 200, TimeSpan.FromSeconds(10));
        int used = 0;
        while (rig.TryTakeUsed(0, out _))
        {
            used++;
        }

        Assert.Multiple(() =>
        {
            Assert.That(used, Is.EqualTo(200));
            Assert.That(rig.Device.GetStatus().NeedsReset, Is.False);
        });
    }
}
