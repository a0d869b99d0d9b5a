using VirtioPanic.GuestDriver.Machine;

namespace VirtioPanic.GuestDriver.Tests.Machine;

public sealed class InterruptControllerTests
{
    [Test]
    public void DeliverMessage_ValidVector_PendingUntilAcknowledged_AndRecorded()
    {
        var controller = new InterruptController(TimeProvider.System);
        int wakeups = 0;
        controller.SetWakeup(() => wakeups++);

        controller.DeliverMessage(InterruptController.MsiAddressBase, 0x41);
        bool taken = controller.TryAcknowledge(out int vector);
        bool again = controller.TryAcknowledge(out _);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(taken, Is.True);
            Assert.That(vector, Is.EqualTo(0x41));
            Assert.That(again, Is.False);
            Assert.That(wakeups, Is.EqualTo(1));
            Assert.That(controller.GetVectorCount(0x41), Is.EqualTo(1));
            Assert.That(controller.GetRecentDeliveries(), Has.Length.EqualTo(1));
        }
    }

    [TestCase(0xFEE0_0000UL, 0x10u)]
    [TestCase(0x1000UL, 0x41u)]
    [TestCase(0xFEE0_0000UL, 0x1_0041u)]
    public void DeliverMessage_InvalidAddressOrVector_DroppedAndCounted(ulong address, uint data)
    {
        var controller = new InterruptController(TimeProvider.System);

        controller.DeliverMessage(address, data);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(controller.TryAcknowledge(out _), Is.False);
            Assert.That(controller.InvalidMessageCount, Is.EqualTo(1));
            Assert.That(controller.MessageCount, Is.Zero);
        }
    }

    [Test]
    public void Line_LevelTriggered_PendsAgainAtEndOfInterruptWhileAsserted()
    {
        var controller = new InterruptController(TimeProvider.System);
        controller.RouteLine(5, 0x50);

        controller.SetLineLevel(5, asserted: true);
        controller.TryAcknowledge(out int first);
        bool whileInService = controller.TryAcknowledge(out _);
        controller.EndOfInterrupt(first);
        bool stillAsserted = controller.TryAcknowledge(out int second);
        controller.SetLineLevel(5, asserted: false);
        controller.EndOfInterrupt(second);
        bool afterDeassert = controller.TryAcknowledge(out _);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(first, Is.EqualTo(0x50));
            Assert.That(whileInService, Is.False);
            Assert.That(stillAsserted, Is.True);
            Assert.That(afterDeassert, Is.False);
            Assert.That(controller.GetLineAssertionCount(5), Is.EqualTo(1));
        }
    }

    [Test]
    public void ConnectDevice_SinkDeliversMessagesAndDrivesItsLine()
    {
        var controller = new InterruptController(TimeProvider.System);
        controller.RouteLine(12, 0x60);
        VirtioPanic.Virtio.Device.IInterruptSink sink = controller.ConnectDevice(12);

        sink.SignalMsi(InterruptController.MsiAddressBase, 0x42);
        sink.SetIntxLevel(true);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(controller.GetVectorCount(0x42), Is.EqualTo(1));
            Assert.That(controller.IsLineAsserted(12), Is.True);
            Assert.That(controller.TryAcknowledge(out int first) ? first : -1, Is.EqualTo(0x60));
            Assert.That(controller.TryAcknowledge(out int second) ? second : -1, Is.EqualTo(0x42));
        }
    }

    [Test]
    public void Line_Unrouted_RecordedButRaisesNothing()
    {
        var controller = new InterruptController(TimeProvider.System);

        controller.SetLineLevel(7, asserted: true);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(controller.TryAcknowledge(out _), Is.False);
            Assert.That(controller.IsLineAsserted(7), Is.True);
            Assert.That(controller.GetRecentDeliveries()[0].Vector, Is.EqualTo(-1));
        }
    }
}
