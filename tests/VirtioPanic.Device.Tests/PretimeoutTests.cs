using System.Buffers.Binary;
using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;

namespace VirtioPanic.Device.Tests;

// Pretimeout notices on noticeq (spec §6.4).
public sealed class PretimeoutTests
{
    private static readonly TimeSpan s_tick = TimeSpan.FromTicks(1);

    private static WatchdogRig Armed(uint timeoutMs = 10_000, uint pretimeoutMs = 3_000)
    {
        WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Control | WatchdogFeatures.Pretimeout);
        Assert.That(rig.Control(2, timeoutMs).Status, Is.EqualTo(0));
        Assert.That(rig.Control(6, pretimeoutMs).Status, Is.EqualTo(0));
        rig.DrainEvents();
        return rig;
    }

    private static (ushort Type, ushort Reserved, uint TimeLeft, uint Timeout, uint Pretimeout) ReadNotice(WatchdogRig rig, ulong address)
    {
        byte[] n = new byte[16];
        rig.Memory.TryRead(address, n);
        return (BinaryPrimitives.ReadUInt16LittleEndian(n), BinaryPrimitives.ReadUInt16LittleEndian(n.AsSpan(2)),
            BinaryPrimitives.ReadUInt32LittleEndian(n.AsSpan(4)), BinaryPrimitives.ReadUInt32LittleEndian(n.AsSpan(8)), BinaryPrimitives.ReadUInt32LittleEndian(n.AsSpan(12)));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_17_NoticeDeliveredExactlyAtDeadlineMinusPretimeout()
    {
        using WatchdogRig rig = Armed();
        ulong notice = rig.PostNoticeBuffer();

        rig.Time.Advance(TimeSpan.FromSeconds(7) - s_tick);
        Assert.That(rig.TryTakeUsed(2, out _), Is.False, "not before the pretimeout point");

        rig.Time.Advance(s_tick);
        UsedBuffer used = rig.TakeUsed(2);
        var n = ReadNotice(rig, notice);
        WatchdogPretimeoutEvent evt = rig.Drain<WatchdogPretimeoutEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(used.Length, Is.EqualTo(16u));
            Assert.That(n.Type, Is.EqualTo(1));
            Assert.That(n.Reserved, Is.EqualTo(0));
            Assert.That(n.TimeLeft, Is.EqualTo(3_000u));
            Assert.That(n.Timeout, Is.EqualTo(10_000u));
            Assert.That(n.Pretimeout, Is.EqualTo(3_000u));
            Assert.That(evt.TimeLeft, Is.EqualTo(TimeSpan.FromSeconds(3)));
            Assert.That(rig.Context!.Signals(2), Is.EqualTo(1));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_17_OneNoticePerCountdown_NextCountdownGetsItsOwn()
    {
        using WatchdogRig rig = Armed();
        rig.PostNoticeBuffer();
        rig.PostNoticeBuffer();

        rig.Time.Advance(TimeSpan.FromSeconds(9));
        Assert.That(rig.TryTakeUsed(2, out _), Is.True);
        Assert.That(rig.TryTakeUsed(2, out _), Is.False, "only one per countdown");

        rig.Control(4); // keepalive: a new countdown
        rig.Time.Advance(TimeSpan.FromSeconds(7));
        Assert.That(rig.TryTakeUsed(2, out _), Is.True, "the next countdown has its own notice");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_18_NoBufferPosted_NoticeWaitsAndIsDeliveredWhenOneArrives()
    {
        using WatchdogRig rig = Armed();
        rig.Time.Advance(TimeSpan.FromSeconds(7));
        Assert.That(rig.Drain<WatchdogPretimeoutEvent>(), Has.Count.EqualTo(1), "the host hears of it at once");
        rig.Time.Advance(TimeSpan.FromSeconds(1));

        ulong notice = rig.PostNoticeBuffer();

        Assert.Multiple(() =>
        {
            Assert.That(rig.TakeUsed(2).Length, Is.EqualTo(16u));
            Assert.That(ReadNotice(rig, notice).TimeLeft, Is.EqualTo(3_000u), "time left when it fired");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_18_PendingNotice_DiscardedByKeepalive()
    {
        using WatchdogRig rig = Armed();
        rig.Time.Advance(TimeSpan.FromSeconds(8));

        rig.Control(4);
        rig.PostNoticeBuffer();

        Assert.That(rig.TryTakeUsed(2, out _), Is.False, "a stale notice is not delivered");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_18_PendingNotice_DiscardedByStopAndByExpiry()
    {
        using WatchdogRig stopped = Armed();
        stopped.Time.Advance(TimeSpan.FromSeconds(8));
        stopped.Control(3);
        stopped.PostNoticeBuffer();
        Assert.That(stopped.TryTakeUsed(2, out _), Is.False, "stop discards");

        using WatchdogRig expired = Armed();
        expired.Time.Advance(TimeSpan.FromSeconds(10));
        expired.PostNoticeBuffer();
        Assert.That(expired.TryTakeUsed(2, out _), Is.False, "expiry discards");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_19_ShortOrReadableNoticeBuffers_ReturnedUnusedAndNoticeStaysPending()
    {
        using WatchdogRig rig = Armed();
        rig.Time.Advance(TimeSpan.FromSeconds(8));

        rig.PostNoticeBuffer(length: 8);
        UsedBuffer shortOne = rig.TakeUsed(2);
        rig.PostChain(2, new DriverBuffer(rig.Buffer(16), 16, DeviceWritable: false));
        rig.Device.Notify(2);
        UsedBuffer readable = rig.TakeUsed(2);
        rig.PostNoticeBuffer();
        UsedBuffer good = rig.TakeUsed(2);

        Assert.Multiple(() =>
        {
            Assert.That(shortOne.Length, Is.EqualTo(0u));
            Assert.That(readable.Length, Is.EqualTo(0u));
            Assert.That(good.Length, Is.EqualTo(16u));
            Assert.That(rig.Drain<GuestProtocolErrorEvent>().Select(e => e.Error), Is.EqualTo(new[] { WatchdogProtocolError.MalformedNoticeBuffer, WatchdogProtocolError.MalformedNoticeBuffer }));
            Assert.That(rig.Context!.NeedsReset, Is.False);
        });
    }

    [Test]
    public void Pretimeout_SetAfterItsPointPassed_FiresPromptly()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Control | WatchdogFeatures.Pretimeout);
        rig.Control(2, 10_000);
        rig.PostNoticeBuffer();
        rig.Time.Advance(TimeSpan.FromSeconds(8));

        Assert.That(rig.Control(6, 5_000).Status, Is.EqualTo(0));
        Assert.That(rig.TryTakeUsed(2, out _), Is.False, "never inside the request that set it");
        rig.Time.Advance(TimeSpan.FromMilliseconds(1));

        Assert.Multiple(() =>
        {
            Assert.That(rig.TryTakeUsed(2, out _), Is.True);
            Assert.That(rig.Drain<WatchdogPretimeoutEvent>(), Has.Count.EqualTo(1));
        });
    }

    [Test]
    public void Pretimeout_IdleNoticeBuffers_AreNeverHeldOrWritten()
    {
        using WatchdogRig rig = Armed();
        ulong notice = rig.PostNoticeBuffer();

        rig.Device.Notify(2);

        Assert.Multiple(() =>
        {
            Assert.That(rig.TryTakeUsed(2, out _), Is.False);
            Assert.That(ReadNotice(rig, notice).Type, Is.EqualTo(0));
        });
    }
}
