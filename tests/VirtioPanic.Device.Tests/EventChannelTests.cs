using VirtioPanic.Device.Tests.Rig;

namespace VirtioPanic.Device.Tests;

// The host event channel: bounded memory, critical events never dropped.
public sealed class EventChannelTests
{
    [Test]
    public void FullChannel_CriticalEventsCoalesced_NeverDropped()
    {
        using var rig = new WatchdogRig(new WatchdogDeviceOptions { EventCapacity = 8 });

        for (int i = 0; i < 1000; i++)
        {
            rig.WriteConfig32(0x08, 1);
        }

        List<WatchdogEvent> events = rig.DrainEvents();
        Assert.Multiple(() =>
        {
            Assert.That(events, Has.Count.LessThanOrEqualTo(8 + 4), "bounded");
            Assert.That(events.OfType<GuestPanickedEvent>().Sum(e => 1 + e.CoalescedCount), Is.EqualTo(1000), "every panic accounted for");
            Assert.That(rig.Device.GetStatus().CoalescedEvents, Is.GreaterThan(0));
            Assert.That(rig.Device.GetStatus().PendingEvents, Is.EqualTo(0));
        });
    }

    [Test]
    public void FullChannel_NonCriticalEventsDropped_CriticalOnesStillAdmitted()
    {
        using var rig = new WatchdogRig(new WatchdogDeviceOptions { EventCapacity = 8 });

        for (int i = 0; i < 100; i++)
        {
            rig.WriteConfig32(0x04, 0); // protocol error (non-critical)
        }

        rig.WriteConfig32(0x08, 1);
        List<WatchdogEvent> events = rig.DrainEvents();

        Assert.Multiple(() =>
        {
            Assert.That(events.OfType<GuestProtocolErrorEvent>().Count(), Is.EqualTo(4), "half the capacity");
            Assert.That(events.OfType<GuestPanickedEvent>().Count(), Is.EqualTo(1));
            Assert.That(rig.Device.GetStatus().DroppedEvents, Is.EqualTo(96));
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.EqualTo(100), "still counted");
        });
    }

    [Test]
    public void Sequence_IsMonotonicAndGapsShowDrops()
    {
        using var rig = new WatchdogRig(new WatchdogDeviceOptions { EventCapacity = 4 });
        for (int i = 0; i < 5; i++)
        {
            rig.WriteConfig32(0x04, 0);
        }

        rig.WriteConfig32(0x08, 4);
        List<long> sequences = [.. rig.DrainEvents().Select(e => e.Sequence)];

        Assert.Multiple(() =>
        {
            Assert.That(sequences, Is.Ordered.Ascending);
            Assert.That(sequences[^1], Is.EqualTo(6));
            Assert.That(sequences, Has.Count.EqualTo(3));
        });
    }

    [Test]
    public void LastEvent_AndEventTimestamps_AreReported()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);
        rig.Time.Advance(TimeSpan.FromSeconds(3));

        rig.Heartbeat();

        WatchdogEvent last = rig.Device.GetStatus().LastEvent!;
        Assert.Multiple(() =>
        {
            Assert.That(last, Is.InstanceOf<WatchdogArmedEvent>());
            Assert.That(last.HostTime, Is.EqualTo(rig.Time.GetUtcNow()));
            Assert.That(last.VmRunTime, Is.EqualTo(TimeSpan.FromSeconds(3)));
        });
    }

    [Test]
    public async Task Dispose_CompletesTheChannel()
    {
        var rig = new WatchdogRig();
        rig.WriteConfig32(0x08, 1);
        rig.Dispose();

        var read = new List<WatchdogEvent>();
        await foreach (WatchdogEvent evt in rig.Device.Events.ReadAllAsync())
        {
            read.Add(evt);
        }

        Assert.Multiple(() =>
        {
            Assert.That(read, Has.Count.EqualTo(1));
            Assert.That(rig.Device.GetStatus().IsPresent, Is.False);
        });
    }
}
