using System.Text;
using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;

namespace VirtioPanic.Device.Tests;

// Rich event records on eventq (spec §6.5).
public sealed class EventRecordTests
{
    private const byte Accepted = 1;
    private const byte Malformed = 2;
    private const byte Unsupported = 3;

    private static WatchdogRig Rig(WatchdogFeatures features = WatchdogFeatures.Events | WatchdogFeatures.LogTail) => WatchdogRig.Started(features);

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_22_EventQueueIgnoredWithoutEventsFeature()
    {
        using var rig = new WatchdogRig();
        rig.Activate(WatchdogFeatures.None, eventQueue: true);
        PostedRecord posted = rig.PostRecordBuffer();

        rig.Commit(posted, RecordSpec.Panic("ignored"));

        Assert.Multiple(() =>
        {
            Assert.That(rig.TryTakeUsed(1, out _), Is.False);
            Assert.That(rig.Drain<GuestPanickedEvent>(), Is.Empty);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_23_PostedAtProbe_ConsumedOnlyWhenCommitted_SpuriousNotificationsHarmless()
    {
        using WatchdogRig rig = Rig();
        PostedRecord posted = rig.PostRecordBuffer();
        rig.Device.Notify(1);
        rig.Device.Notify(1);

        // Filled but not yet committed: state stays 0.
        rig.Commit(posted, RecordSpec.Panic("half written") with { State = 0 });
        Assert.Multiple(() =>
        {
            Assert.That(rig.TryTakeUsed(1, out _), Is.False, "not consumed before COMMITTED");
            Assert.That(rig.ReadStatus(posted).Status, Is.EqualTo(0), "status untouched");
            Assert.That(rig.Device.HeldRecordCount, Is.EqualTo(1));
        });

        rig.Commit(posted, RecordSpec.Panic("Kernel panic - not syncing: sysrq triggered crash"));

        GuestPanickedEvent panic = rig.Drain<GuestPanickedEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(panic.Message, Is.EqualTo("Kernel panic - not syncing: sysrq triggered crash"));
            Assert.That(panic.Source, Is.EqualTo(WatchdogEventSource.EventRecord));
            Assert.That(rig.TakeUsed(1).Length, Is.EqualTo(8u));
            Assert.That(rig.ReadStatus(posted), Is.EqualTo((Accepted, (uint)panic.Sequence)));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_23_BuffersExaminedInRingOrder_AnyCommittedOneIsConsumed()
    {
        using WatchdogRig rig = Rig();
        PostedRecord first = rig.PostRecordBuffer(recordLength: 256);
        PostedRecord second = rig.PostRecordBuffer(recordLength: 256);
        PostedRecord third = rig.PostRecordBuffer(recordLength: 256);

        rig.Commit(first, RecordSpec.Panic("one") with { Sequence = 1 }, notify: false);
        rig.Commit(third, new RecordSpec { Type = 3, Sequence = 3 }, notify: false);
        rig.Device.Notify(1);

        List<GuestReportEvent> reports = rig.Drain<GuestReportEvent>();
        Assert.Multiple(() =>
        {
            Assert.That(reports.Select(r => r.RecordSequence), Is.EqualTo(new uint?[] { 1, 3 }));
            Assert.That(rig.ReadStatus(second).Status, Is.EqualTo(0));
            Assert.That(rig.Device.HeldRecordCount, Is.EqualTo(1));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_23_CommittedBeforeDriverOk_ConsumedAtActivation()
    {
        using var rig = new WatchdogRig();
        rig.SetUpQueue(0, 16, eventIndex: false);
        rig.SetUpQueue(1, 16, eventIndex: false);
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 256, notify: false);
        rig.Commit(posted, new RecordSpec { Type = 3, Message = "early shutdown"u8.ToArray() }, notify: false);
        ulong negotiated = (ulong)WatchdogFeatures.Events | Virtio.Device.VirtioFeatures.Version1;

        rig.Device.Activate(new TestDeviceContext(rig.Memory, negotiated, rig.Queues));

        Assert.Multiple(() =>
        {
            Assert.That(rig.Drain<GuestShutdownEvent>().Single().Message, Is.EqualTo("early shutdown"));
            Assert.That(rig.ReadStatus(posted).Status, Is.EqualTo(Accepted));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_24_HoldsAtMost16_RestStayAvailableUntilConsumed()
    {
        using var rig = new WatchdogRig();
        rig.Activate(WatchdogFeatures.Events, size: 64);
        var posted = new List<PostedRecord>();
        for (int i = 0; i < 20; i++)
        {
            posted.Add(rig.PostRecordBuffer(recordLength: 128));
        }

        Assert.That(rig.Device.HeldRecordCount, Is.EqualTo(16));
        rig.Commit(posted[0], RecordSpec.Panic("first"));
        Assert.That(rig.Device.HeldRecordCount, Is.EqualTo(16), "one consumed, one more popped");

        rig.Commit(posted[17], RecordSpec.Panic("eighteenth"));
        Assert.That(rig.Drain<GuestPanickedEvent>().Select(p => p.Message), Is.EqualTo(new[] { "first" }), "the 18th is not yet held");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_25_StatusWrittenOnlyInWritablePart_ReadablePartUntouched()
    {
        using WatchdogRig rig = Rig();
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 200, statusLength: 4);
        RecordSpec spec = RecordSpec.Panic("x");
        rig.Commit(posted, spec);

        byte[] after = new byte[spec.ToBytes().Length];
        rig.Memory.TryRead(posted.RecordAddress, after);
        Assert.Multiple(() =>
        {
            Assert.That(after, Is.EqualTo(spec.ToBytes()), "readable part not written");
            Assert.That(rig.TakeUsed(1).Length, Is.EqualTo(4u), "used length min(8, writable)");
            Assert.That(rig.ReadStatus(posted).Status, Is.EqualTo(Accepted));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_25_NoWritablePart_ReturnedWithUsedLengthZero()
    {
        using WatchdogRig rig = Rig();
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 200, statusLength: 0);

        rig.Commit(posted, new RecordSpec { Type = 2 });

        Assert.Multiple(() =>
        {
            Assert.That(rig.TakeUsed(1).Length, Is.EqualTo(0u));
            Assert.That(rig.Drain<GuestCrashLoadedEvent>(), Has.Count.EqualTo(1));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_26_MaximumMessageAndLogTail_ReportedComplete()
    {
        using WatchdogRig rig = Rig();
        PostedRecord posted = rig.PostRecordBuffer();
        string message = new string('m', 1023) + "!";
        string log = string.Concat(Enumerable.Range(0, 1200).Select(i => $"[{i:D6}] line\n"))[..16384];
        var spec = new RecordSpec
        {
            Type = 1,
            CodeCount = 5,
            CodeFormat = 1,
            Codes = [0x9F, 3, 0xFFFF_8000_0000_0000, 4, ulong.MaxValue],
            Sequence = 77,
            VcpuId = 3,
            GuestTimeNs = 1_500_000_000,
            Message = Encoding.UTF8.GetBytes(message),
            LogTail = Encoding.UTF8.GetBytes(log),
        };

        rig.Commit(posted, spec);

        GuestPanickedEvent panic = rig.Drain<GuestPanickedEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(panic.Message, Is.EqualTo(message));
            Assert.That(panic.LogTail, Is.EqualTo(log));
            Assert.That(panic.Codes, Is.EqualTo(spec.Codes));
            Assert.That(panic.CodeFormat, Is.EqualTo(PanicCodeFormat.WindowsBugcheck));
            Assert.That(panic.RecordSequence, Is.EqualTo(77u));
            Assert.That(panic.VcpuId, Is.EqualTo(3u));
            Assert.That(panic.GuestTime, Is.EqualTo(TimeSpan.FromSeconds(1.5)));
            Assert.That(rig.ReadStatus(posted).Status, Is.EqualTo(Accepted));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_26_RecordSplitOverSeveralDescriptors_IsGathered()
    {
        using WatchdogRig rig = Rig();
        ulong a = rig.Buffer(50);
        ulong b = rig.Buffer(100);
        ulong status = rig.Buffer(8);
        byte[] bytes = RecordSpec.Panic("split across descriptors").ToBytes();
        rig.Memory.TryWrite(a, bytes.AsSpan(0, 50));
        rig.Memory.TryWrite(b, bytes.AsSpan(50));
        rig.PostChain(1, new DriverBuffer(a, 50, false), new DriverBuffer(b, 100, false), new DriverBuffer(status, 8, true));

        rig.Device.Notify(1);

        Assert.That(rig.Drain<GuestPanickedEvent>().Single().Message, Is.EqualTo("split across descriptors"));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_26_InvalidUtf8_ReplacedNotRejected()
    {
        using WatchdogRig rig = Rig();
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 200);

        rig.Commit(posted, new RecordSpec { Type = 1, Message = [0x41, 0xFF, 0x42] });

        Assert.That(rig.Drain<GuestPanickedEvent>().Single().Message, Is.EqualTo("A\uFFFDB"));
    }

    private static IEnumerable<TestCaseData> MalformedRecords()
    {
        yield return new TestCaseData(new RecordSpec { CodeCount = 6 }).SetName("WDT_DEV_27_CodeCountAbove5_Malformed");
        yield return new TestCaseData(new RecordSpec { CodeFormat = 3 }).SetName("WDT_DEV_27_UnknownCodeFormat_Malformed");
        yield return new TestCaseData(new RecordSpec { MessageLengthOverride = 1025 }).SetName("WDT_DEV_27_MessageLengthAbove1024_Malformed");
        yield return new TestCaseData(new RecordSpec { LogTailLengthOverride = 16385 }).SetName("WDT_DEV_27_LogTailAbove16384_Malformed");
        yield return new TestCaseData(new RecordSpec { MessageLengthOverride = 1000 }).SetName("WDT_DEV_27_RecordRunsPastReadablePart_Malformed");
    }

    [TestCaseSource(nameof(MalformedRecords))]
    [Category("Conformance")]
    public void WDT_DEV_27_MalformedRecord(RecordSpec spec)
    {
        using WatchdogRig rig = Rig();
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 512);

        rig.Commit(posted, spec);

        GuestProtocolErrorEvent error = rig.Drain<GuestProtocolErrorEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(rig.ReadStatus(posted).Status, Is.EqualTo(Malformed));
            Assert.That(rig.TakeUsed(1).Length, Is.EqualTo(8u));
            Assert.That(error.Error, Is.EqualTo(WatchdogProtocolError.MalformedRecord));
            Assert.That(error.DeclaredRecordType, Is.EqualTo((ushort)1));
            Assert.That(rig.Context!.NeedsReset, Is.False);
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.EqualTo(1));
        });

        // The queue keeps working.
        PostedRecord next = rig.PostRecordBuffer(recordLength: 256);
        rig.Commit(next, RecordSpec.Panic("after"));
        Assert.That(rig.Drain<GuestPanickedEvent>().Single().Message, Is.EqualTo("after"));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_27_LogTailWithoutFeature_Malformed()
    {
        using WatchdogRig rig = Rig(WatchdogFeatures.Events);
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 256);

        rig.Commit(posted, RecordSpec.Panic("m") with { LogTail = [1, 2, 3] });

        Assert.That(rig.ReadStatus(posted).Status, Is.EqualTo(Malformed));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_27_UnknownType_Unsupported()
    {
        using WatchdogRig rig = Rig();
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 256);

        rig.Commit(posted, new RecordSpec { Type = 9 });

        GuestProtocolErrorEvent error = rig.Drain<GuestProtocolErrorEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(rig.ReadStatus(posted).Status, Is.EqualTo(Unsupported));
            Assert.That(error.Error, Is.EqualTo(WatchdogProtocolError.UnsupportedRecordType));
            Assert.That(error.DeclaredRecordType, Is.EqualTo((ushort)9));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_28_ReadablePartShorterThanHeader_CompletedAtOnceAsMalformed()
    {
        using WatchdogRig rig = Rig();

        PostedRecord posted = rig.PostRecordBuffer(recordLength: 79);

        Assert.Multiple(() =>
        {
            Assert.That(rig.TakeUsed(1).Length, Is.EqualTo(8u));
            Assert.That(rig.ReadStatus(posted).Status, Is.EqualTo(Malformed));
            Assert.That(rig.Device.HeldRecordCount, Is.EqualTo(0));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_28_MoreThanEightBuffers_CompletedAtOnceAsMalformed()
    {
        using WatchdogRig rig = Rig();
        DriverBuffer[] buffers = [.. Enumerable.Range(0, 9).Select(_ => new DriverBuffer(rig.Buffer(16), 16, false)), new DriverBuffer(rig.Buffer(8), 8, true)];
        rig.PostChain(1, buffers);

        rig.Device.Notify(1);

        Assert.Multiple(() =>
        {
            Assert.That(rig.TakeUsed(1).Length, Is.EqualTo(8u));
            Assert.That(rig.Drain<GuestProtocolErrorEvent>().Single().Detail, Does.Contain("8 buffers"));
        });
    }

    [Test]
    public void Records_ReportedWithTheRightKind()
    {
        using WatchdogRig rig = Rig();
        for (ushort type = 1; type <= 3; type++)
        {
            rig.Commit(rig.PostRecordBuffer(recordLength: 128), new RecordSpec { Type = type, Sequence = type });
        }

        Assert.That(rig.DrainEvents().Select(e => e.Kind), Is.EqualTo(new[] { WatchdogEventKind.GuestPanicked, WatchdogEventKind.GuestCrashLoaded, WatchdogEventKind.GuestShutdown }));
    }
}
