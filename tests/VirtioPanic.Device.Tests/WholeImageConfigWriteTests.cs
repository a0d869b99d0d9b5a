using System.Buffers.Binary;
using VirtioPanic.Device.Tests.Rig;

namespace VirtioPanic.Device.Tests;

// A configuration write that covers several fields (spec §4.1, WDT-DEV-38). QEMU's generic
// vhost-user device forwards every driver write as one SET_CONFIG of the whole 20-byte image:
// what its last read returned, with the field the driver wrote replaced. These tests write
// exactly such images.
public sealed class WholeImageConfigWriteTests
{
    [Test]
    [Category("Conformance")]
    public void WDT_DEV_38_ImageAsRead_WrittenBack_ReportsNothingClearsNothingNoError()
    {
        using var rig = new WatchdogRig();
        rig.Device.SetBootReason(WatchdogBootReason.Watchdog);
        byte[] image = ReadImage(rig);

        rig.Device.WriteConfig(0, image);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.DrainEvents(), Is.Empty, "panic_events = 7, what a read returns, is no report");
            Assert.That(rig.ReadConfig32(0x00), Is.EqualTo((uint)WatchdogBootReason.Watchdog), "boot_reason as read is not a clear");
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.Zero);
        }
    }

    [TestCase(1u, WatchdogEventKind.GuestPanicked)]
    [TestCase(2u, WatchdogEventKind.GuestCrashLoaded)]
    [TestCase(4u, WatchdogEventKind.GuestShutdown)]
    [Category("Conformance")]
    public void WDT_DEV_38_PanicEventsWrittenInTheImage_ReportedOnce_RepeatedIdenticalImageReportsNothing(uint value, WatchdogEventKind kind)
    {
        using var rig = new WatchdogRig();
        byte[] image = ReadImage(rig);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x08), value);

        rig.Device.WriteConfig(0, image);
        List<WatchdogEvent> first = rig.DrainEvents();
        rig.Device.WriteConfig(0, image);                // the front end's copy still holds the value
        List<WatchdogEvent> repeated = rig.DrainEvents();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(first.Select(e => e.Kind), Is.EqualTo(new[] { kind }));
            Assert.That(first.OfType<GuestReportEvent>().Single().Source, Is.EqualTo(WatchdogEventSource.ConfigField));
            Assert.That(repeated, Is.Empty, "a repeated identical image invents no report");
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.Zero);
        }
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_38_SameEventAfterANewRead_IsANewReport()
    {
        using var rig = new WatchdogRig();
        byte[] image = ReadImage(rig);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x08), 4);
        rig.Device.WriteConfig(0, image);

        byte[] again = ReadImage(rig);                   // the read refreshes the front end's copy (7)
        BinaryPrimitives.WriteUInt32LittleEndian(again.AsSpan(0x08), 4);
        rig.Device.WriteConfig(0, again);

        Assert.That(rig.DrainEvents().Select(e => e.Kind), Is.EqualTo(new[] { WatchdogEventKind.GuestShutdown, WatchdogEventKind.GuestShutdown }), "no report lost");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_38_BootReasonZeroInTheImage_Clears_AndAClearOfZeroIsHarmless()
    {
        using var rig = new WatchdogRig();
        rig.Device.SetBootReason(WatchdogBootReason.Panic);
        byte[] image = ReadImage(rig);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x00), 0);

        rig.Device.WriteConfig(0, image);
        uint afterClear = rig.ReadConfig32(0x00);
        rig.Device.WriteConfig(0, image);                // the same clear again: boot_reason is already 0
        byte[] fresh = ReadImage(rig);
        rig.Device.WriteConfig(0, fresh);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(afterClear, Is.Zero, "the driver acknowledged the boot reason");
            Assert.That(rig.ReadConfig32(0x00), Is.Zero);
            Assert.That(rig.DrainEvents(), Is.Empty, "panic_events 7 in each image reported nothing, the clears no error");
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.Zero);
        }
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_38_StaleBootReasonInTheImage_DoesNotClearAReasonTheHostSetSinceTheRead()
    {
        using var rig = new WatchdogRig();
        byte[] image = ReadImage(rig);                   // boot_reason 0
        rig.Device.SetBootReason(WatchdogBootReason.Host);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x08), 2);

        rig.Device.WriteConfig(0, image);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.ReadConfig32(0x00), Is.EqualTo((uint)WatchdogBootReason.Host), "the 0 was the front end's stale copy, not a clear");
            Assert.That(rig.DrainEvents().Select(e => e.Kind), Is.EqualTo(new[] { WatchdogEventKind.GuestCrashLoaded }));
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.Zero);
        }
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_38_ReadOnlyFieldChangedInTheImage_IgnoredAsAnError_TheRestStillTakesEffect()
    {
        using var rig = new WatchdogRig();
        rig.Device.SetBootReason(WatchdogBootReason.Watchdog);
        byte[] image = ReadImage(rig);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x04), 1);   // default_timeout_ms
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x00), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x08), 1);

        rig.Device.WriteConfig(0, image);
        List<WatchdogEvent> events = rig.DrainEvents();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.ReadConfig32(0x04), Is.EqualTo(20_000u), "read-only");
            Assert.That(rig.ReadConfig32(0x00), Is.Zero, "cleared");
            Assert.That(events.OfType<GuestPanickedEvent>().Count(), Is.EqualTo(1));
            Assert.That(events.OfType<GuestProtocolErrorEvent>().Select(e => e.Error), Is.EqualTo(new[] { WatchdogProtocolError.InvalidConfigWrite }), "one error for the write");
        }
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_38_WriteAcrossTwoFields_EachFieldInterpreted()
    {
        // Eight bytes at 0x08: panic_events and min_timeout_ms as read, panic_events replaced.
        using var rig = new WatchdogRig();
        byte[] image = ReadImage(rig);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x08), 1);

        rig.Device.WriteConfig(0x08, image.AsSpan(0x08, 8));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.DrainEvents().Select(e => e.Kind), Is.EqualTo(new[] { WatchdogEventKind.GuestPanicked }));
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.Zero);
        }
    }

    private static byte[] ReadImage(WatchdogRig rig)
    {
        byte[] image = new byte[20];
        rig.Device.ReadConfig(0, image);
        return image;
    }
}
