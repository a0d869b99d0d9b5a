using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Device.Tests;

// WDT-DEV-37 (issue 19): a guest may post a perfectly valid buffer of 2^32 - 1 bytes. The device's
// buffers are tiny, so a chain longer than VIRTIO_WDT_CHAIN_MAX (65536 bytes) is a ring error on any
// queue: not written, not returned, DEVICE_NEEDS_RESET, the other queues unaffected. Guest memory
// here has a 4 GiB region above the rig's RAM (reserved, never touched), so the descriptor is
// inside guest memory and the queue engine accepts it.
public sealed class OversizedChainTests
{
    private const ulong HugeBase = 0x1_0000_0000;
    private const ulong HugeSize = 0x1_0000_0000;

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_37_HeartbeatBufferOf4GiB_IsARingError_NotWrittenNotReturned()
    {
        using GuestMemory memory = HugeMemory();
        using var rig = new WatchdogRig(memory: memory);
        rig.Activate(WatchdogFeatures.Events);
        rig.PostChain(0, new DriverBuffer(HugeBase, uint.MaxValue, DeviceWritable: true));

        Assert.That(() => rig.Device.Notify(0), Throws.Nothing);
        byte[] first = new byte[1];
        memory.TryRead(HugeBase, first);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Context!.NeedsReset, Is.True);
            Assert.That(rig.TryTakeUsed(0, out _), Is.False, "not returned");
            Assert.That(first[0], Is.Zero, "not written");
            Assert.That(rig.Device.GetStatus().Armed, Is.False, "not a heartbeat");
            Assert.That(rig.Drain<GuestProtocolErrorEvent>().Single().Error, Is.EqualTo(WatchdogProtocolError.RingError));
        });

        // eventq still works (WDT-DEV-32).
        PostedRecord posted = rig.PostRecordBuffer(recordLength: 200);
        rig.Commit(posted, RecordSpec.Panic("still reporting"));
        Assert.That(rig.Drain<GuestPanickedEvent>().Single().Message, Is.EqualTo("still reporting"));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_37_RecordBufferOf4GiB_IsARingErrorOnEventq_WatchdogqKeepsWorking()
    {
        using GuestMemory memory = HugeMemory();
        using var rig = new WatchdogRig(memory: memory);
        rig.Activate(WatchdogFeatures.Events);
        rig.PostChain(1, new DriverBuffer(HugeBase, uint.MaxValue, DeviceWritable: false), new DriverBuffer(rig.Buffer(8), 8, DeviceWritable: true));

        Assert.That(() => rig.Device.Notify(1), Throws.Nothing);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Context!.NeedsReset, Is.True);
            Assert.That(rig.Device.HeldRecordCount, Is.Zero, "not held");
            Assert.That(rig.TryTakeUsed(1, out _), Is.False, "not returned");
            Assert.That(rig.Heartbeat(), Is.EqualTo(1), "watchdogq unaffected");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_37_NoticeBufferOf4GiB_IsARingError_TheNoticeStaysPending()
    {
        using GuestMemory memory = HugeMemory();
        using var rig = new WatchdogRig(memory: memory);
        rig.Activate(WatchdogFeatures.Control | WatchdogFeatures.Pretimeout);
        rig.Control(2, 10_000);
        rig.Control(6, 4_000);
        rig.PostChain(2, new DriverBuffer(HugeBase, uint.MaxValue, DeviceWritable: true));
        rig.Device.Notify(2);

        Assert.That(() => rig.Time.Advance(TimeSpan.FromSeconds(6)), Throws.Nothing);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Context!.NeedsReset, Is.True);
            Assert.That(rig.TryTakeUsed(2, out _), Is.False);
            Assert.That(rig.Drain<WatchdogPretimeoutEvent>(), Has.Count.EqualTo(1), "the host still hears of the pretimeout");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_37_ChainOfExactlyTheMaximum_IsAccepted()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Heartbeat(length: 65536), Is.EqualTo(1));
            Assert.That(rig.Context!.NeedsReset, Is.False);
        });

        rig.PostChain(0, new DriverBuffer(rig.Buffer(65536), 65536, DeviceWritable: true), new DriverBuffer(rig.Buffer(1), 1, DeviceWritable: true));
        rig.Device.Notify(0);
        Assert.That(rig.Context!.NeedsReset, Is.True, "one byte more is a ring error");
    }

    private static GuestMemory HugeMemory() => new(
        GuestMemoryRegion.AllocateAnonymous(WatchdogRig.RamBase, WatchdogRig.RamSize),
        GuestMemoryRegion.AllocateAnonymous(HugeBase, HugeSize));
}
