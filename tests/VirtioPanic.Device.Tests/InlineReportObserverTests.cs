using VirtioPanic.Device.Protocol;
using VirtioPanic.Device.Tests.Rig;

namespace VirtioPanic.Device.Tests;

// WatchdogDevice.SetInlineReportObserver (issue 12): each panic_events report has exactly one
// consumer, decided inside the write before the report is published, and a taken report is handled
// in the post-access step (AfterConfigWrite) on the writing thread only.
public sealed class InlineReportObserverTests
{
    private static readonly byte[] s_panicked = [1, 0, 0, 0];

    [Test]
    public void PanicWrite_ObserverTakesIt_NotPublished_HandledOnlyInThePostAccessStep()
    {
        using var rig = new WatchdogRig();
        var asked = new List<GuestReportEvent>();
        var handled = new List<GuestReportEvent>();
        rig.Device.SetInlineReportObserver(report =>
        {
            asked.Add(report);
            return () => handled.Add(report);
        });

        rig.Device.WriteConfig(WatchdogConfig.PanicEvents, s_panicked);
        int handledBeforeThePostAccessStep = handled.Count;
        rig.Device.AfterConfigWrite();
        rig.Device.AfterConfigWrite();

        Assert.Multiple(() =>
        {
            Assert.That(asked.Select(r => r.Kind), Is.EqualTo(new[] { WatchdogEventKind.GuestPanicked }));
            Assert.That(handledBeforeThePostAccessStep, Is.Zero, "not handled under the transport's lock");
            Assert.That(handled, Is.EqualTo(asked), "handled once, in the post-access step");
            Assert.That(rig.Device.Events.TryRead(out _), Is.False, "a taken report is not published");
            Assert.That(rig.Device.GetStatus().LastEvent, Is.SameAs(asked[0]), "it is still the device's last event");
        });
    }

    [Test]
    public void PanicWrite_ObserverDeclines_PublishedToEvents_NothingRunsAfterwards()
    {
        using var rig = new WatchdogRig();
        int asked = 0;
        rig.Device.SetInlineReportObserver(_ =>
        {
            asked++;
            return null;
        });

        rig.WriteConfig32(WatchdogConfig.PanicEvents, 1);

        Assert.Multiple(() =>
        {
            Assert.That(asked, Is.EqualTo(1));
            Assert.That(rig.Drain<GuestPanickedEvent>(), Has.Count.EqualTo(1), "a declined report goes to Events");
        });
    }

    [Test]
    public void PanicWrite_WithAnUnreadEvent_ObserverIsNotAsked_TheReportQueuesBehindIt()
    {
        using var rig = new WatchdogRig();
        int asked = 0;
        rig.Device.SetInlineReportObserver(_ =>
        {
            asked++;
            return () => { };
        });

        // An invalid write is a protocol-error event that nobody has read yet.
        rig.WriteConfig32(WatchdogConfig.BootReason, 5);
        rig.WriteConfig32(WatchdogConfig.PanicEvents, 1);

        Assert.Multiple(() =>
        {
            Assert.That(asked, Is.Zero, "a taken report would overtake the unread event");
            Assert.That(rig.DrainEvents().Select(e => e.Kind), Is.EqualTo(new[] { WatchdogEventKind.ProtocolError, WatchdogEventKind.GuestPanicked }));
        });
    }

    [Test]
    public void PostAccessStep_OnAnotherThread_LeavesTheTakenReportToItsWriter()
    {
        using var rig = new WatchdogRig();
        int handled = 0;
        rig.Device.SetInlineReportObserver(_ => () => handled++);

        rig.Device.WriteConfig(WatchdogConfig.PanicEvents, s_panicked);
        var other = new Thread(rig.Device.AfterConfigWrite);
        other.Start();
        other.Join();
        int afterTheOtherThread = handled;
        rig.Device.AfterConfigWrite();

        Assert.Multiple(() =>
        {
            Assert.That(afterTheOtherThread, Is.Zero);
            Assert.That(handled, Is.EqualTo(1));
        });
    }

    [Test]
    public void PanicWrite_WhileATakenReportWaits_IsPublishedInstead_NeitherIsLost()
    {
        using var rig = new WatchdogRig();
        int asked = 0;
        int handled = 0;
        rig.Device.SetInlineReportObserver(_ =>
        {
            asked++;
            return () => handled++;
        });

        // Two writes before the first one's post-access step (a transport that lets another access in between).
        rig.Device.WriteConfig(WatchdogConfig.PanicEvents, s_panicked);
        rig.Device.WriteConfig(WatchdogConfig.PanicEvents, s_panicked);
        rig.Device.AfterConfigWrite();

        Assert.Multiple(() =>
        {
            Assert.That(asked, Is.EqualTo(1), "the observer is asked only while no taken report waits");
            Assert.That(handled, Is.EqualTo(1));
            Assert.That(rig.Drain<GuestPanickedEvent>(), Has.Count.EqualTo(1), "the second report went to Events");
        });
    }
}
