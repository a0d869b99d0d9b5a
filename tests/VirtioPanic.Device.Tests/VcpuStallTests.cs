using System.Buffers.Binary;
using Microsoft.Extensions.Logging.Testing;
using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Device.Tests;

// Per-vCPU stall detection (spec §6.12, VIRTIO_WDT_F_VCPU_STALL): fake time and a fake per-vCPU
// clock, no sleeps. Stage one 2 s of a vCPU's run time, stage two 3 s of VM run time, no resume
// grace unless a test sets one.
public sealed class VcpuStallTests
{
    private const uint Heartbeat = 0x20;
    private static readonly TimeSpan s_tick = TimeSpan.FromTicks(1);
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan s_stage2 = TimeSpan.FromSeconds(3);

    private readonly Dictionary<int, uint> _sequence = [];

    private static WatchdogDeviceOptions Options(int vcpus = 4, TimeSpan? grace = null) => new()
    {
        VcpuCount = vcpus,
        VcpuStallTimeout = s_timeout,
        VcpuStallSecondStage = s_stage2,
        ResumeGrace = grace ?? TimeSpan.Zero,
    };

    private static WatchdogRig Started(FakeVcpuClock? clock, WatchdogFeatures features = WatchdogFeatures.VcpuStall, WatchdogDeviceOptions? options = null)
    {
        var rig = new WatchdogRig(options ?? Options(), vcpuClock: clock);
        rig.Activate(features);
        return rig;
    }

    // One PET as the reference driver writes it: index, a per-CPU sequence 1..32767, bit 31 clear.
    private void Pet(WatchdogRig rig, int vcpu)
    {
        uint next = _sequence.TryGetValue(vcpu, out uint s) ? s % 32767 + 1 : 1;
        _sequence[vcpu] = next;
        rig.WriteConfig32(Heartbeat, (uint)vcpu | next << 16);
    }

    private static void Offline(WatchdogRig rig, int vcpu) => rig.WriteConfig32(Heartbeat, 0x8000_0000u | (uint)vcpu | 1u << 16);

    // Time passes in steps no longer than `step`; the vCPUs in `running` run all of it (their
    // clocks advance before the device's timer looks), the others are halted.
    private static void Run(WatchdogRig rig, FakeVcpuClock? clock, TimeSpan duration, int[] running, TimeSpan? step = null, Action? eachStep = null)
    {
        TimeSpan s = step ?? TimeSpan.FromMilliseconds(100);
        for (TimeSpan done = TimeSpan.Zero; done < duration; done += s)
        {
            TimeSpan d = duration - done < s ? duration - done : s;
            foreach (int v in running)
            {
                clock?.Ran(v, d);
            }

            rig.Time.Advance(d);
            eachStep?.Invoke();
        }
    }

    private static (ushort Type, ushort Vcpu, uint StalledMs, uint TimeoutMs, uint Stage2Ms) ReadNotice(WatchdogRig rig, ulong address)
    {
        byte[] n = new byte[16];
        rig.Memory.TryRead(address, n);
        return (BinaryPrimitives.ReadUInt16LittleEndian(n), BinaryPrimitives.ReadUInt16LittleEndian(n.AsSpan(2)),
            BinaryPrimitives.ReadUInt32LittleEndian(n.AsSpan(4)), BinaryPrimitives.ReadUInt32LittleEndian(n.AsSpan(8)), BinaryPrimitives.ReadUInt32LittleEndian(n.AsSpan(12)));
    }

    // --- WDT-DEV-40: configuration ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_40_WithAVcpuCount_BitOffered_36ByteLayout_HeartbeatReadsZero()
    {
        using var rig = new WatchdogRig(Options(vcpus: 8));
        Assert.That(rig.Device.OfferedFeatures, Is.EqualTo(WatchdogFeatures.All | WatchdogFeatures.VcpuStall), "a count is enough: Features (All) need not list it");

        byte[] image = new byte[36];
        rig.Device.ReadConfig(0, image);
        Assert.Multiple(() =>
        {
            Assert.That(rig.Device.OfferedFeatures & WatchdogFeatures.VcpuStall, Is.EqualTo(WatchdogFeatures.VcpuStall));
            Assert.That(rig.Device.DeviceFeatures & (1UL << 6), Is.Not.Zero, "bit 6");
            Assert.That(rig.Device.ConfigSize, Is.EqualTo(36));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x14)), Is.EqualTo(8u), "vcpu_count");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x18)), Is.EqualTo(2000u), "vcpu_timeout_ms");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x1C)), Is.EqualTo(3000u), "vcpu_stage2_ms");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x20)), Is.Zero, "vcpu_heartbeat reads 0");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x04)), Is.EqualTo(20_000u), "the first 20 bytes are unchanged");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_40_WithoutAVcpuCount_BitNotOffered_ConfigStays20Bytes()
    {
        using var rig = new WatchdogRig(new WatchdogDeviceOptions { Features = WatchdogFeatures.All });
        byte[] tail = [9, 9, 9, 9];
        rig.Device.ReadConfig(0x14, tail);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Device.OfferedFeatures & WatchdogFeatures.VcpuStall, Is.EqualTo(WatchdogFeatures.None));
            Assert.That(rig.Device.ConfigSize, Is.EqualTo(20));
            Assert.That(rig.Virtio.AcceptFeatures((ulong)WatchdogFeatures.VcpuStall | VirtioFeatures.Version1), Is.False, "not offered, so refused");
            Assert.That(tail, Is.EqualTo(new byte[4]), "nothing beyond 20 bytes");
            Assert.That(rig.Device.GetStatus().VcpuClock, Is.EqualTo(VcpuClockSource.NotOffered));
            Assert.That(WatchdogFeatures.All & WatchdogFeatures.VcpuStall, Is.EqualTo(WatchdogFeatures.None), "All is the 20-byte device's set");
            Assert.That(() => new WatchdogDeviceOptions { Features = WatchdogFeatures.All | WatchdogFeatures.VcpuStall }.Validate(),
                Throws.ArgumentException.With.Message.Contains("VcpuStall is offered only with a VcpuCount"));
        });
    }

    // --- WDT-DEV-41: PET and OFFLINE ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_41_PetStartsTracking_OfflineStops_SequenceBitsIgnored()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock);
        Assert.That(rig.Device.GetStatus().TrackedVcpus, Is.Zero, "nothing is tracked before a pet");

        rig.WriteConfig32(Heartbeat, 2u | 0x1234u << 16);
        rig.WriteConfig32(Heartbeat, 3u | 0x7FFFu << 16);
        Assert.That(rig.Device.GetStatus().TrackedVcpus, Is.EqualTo(2));

        Offline(rig, 3);
        Run(rig, clock, TimeSpan.FromSeconds(10), [0, 1, 2, 3]);

        List<VcpuStalledEvent> stalls = rig.Drain<VcpuStalledEvent>();
        Assert.Multiple(() =>
        {
            Assert.That(stalls.Select(e => e.Vcpu), Is.EqualTo(new[] { 2 }), "only the tracked vCPU stalls; 3 went offline, 0 and 1 never pet");
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.Zero);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_41_HotUnplug_OfflineOfAStalledVcpu_DiscardsItsNotice_NoStageTwo_TrackedAgainFromItsNextPet()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock);
        Pet(rig, 1);
        Run(rig, clock, s_timeout, [1]);
        Assert.That(rig.Drain<VcpuStalledEvent>(), Has.Count.EqualTo(1));

        Offline(rig, 1);
        ulong buffer = rig.PostNoticeBuffer();
        Run(rig, clock, TimeSpan.FromSeconds(10), [1]);

        Assert.Multiple(() =>
        {
            Assert.That(rig.TryTakeUsed(2, out _), Is.False, "the discarded notice is not delivered");
            Assert.That(rig.Drain<VcpuStallExpiredEvent>(), Is.Empty, "no stage two for an offline vCPU");
        });

        Pet(rig, 1);
        Run(rig, clock, s_timeout, [1]);
        Assert.That(rig.TakeUsed(2).Length, Is.EqualTo(16u), "tracked again from its next pet");
        Assert.That(ReadNotice(rig, buffer).Vcpu, Is.EqualTo(1));
    }

    // --- WDT-DEV-42: hostile writes, storms ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_42_HostileIndicesWidthsAndOffsets_IgnoredAndCounted_NothingChanges()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock);
        Pet(rig, 0);
        byte[] before = rig.Device.SaveState();

        rig.WriteConfig32(Heartbeat, 4u | 1u << 16);            // index = vcpu_count
        rig.WriteConfig32(Heartbeat, 0xFFFFu | 1u << 16);       // the largest index
        rig.WriteConfig32(Heartbeat, 0x8000_FFFFu);             // OFFLINE of a hostile index
        rig.Device.WriteConfig(Heartbeat, [1, 0]);              // 2 bytes
        rig.Device.WriteConfig(Heartbeat, [1]);                 // 1 byte
        rig.Device.WriteConfig(Heartbeat + 1, [1, 0, 0]);       // inside the field
        rig.Device.WriteConfig(0x14, [9, 0, 0, 0]);             // read-only vcpu_count
        rig.Device.WriteConfig(0x18, [9, 0, 0, 0]);             // read-only vcpu_timeout_ms

        WatchdogDeviceStatus status = rig.Device.GetStatus();
        Assert.Multiple(() =>
        {
            Assert.That(status.ProtocolErrors, Is.EqualTo(8));
            Assert.That(rig.Drain<GuestProtocolErrorEvent>().Take(6).Select(e => e.Error), Is.All.EqualTo(WatchdogProtocolError.InvalidVcpuHeartbeat));
            Assert.That(status.TrackedVcpus, Is.EqualTo(1));
            Assert.That(rig.ReadConfig32(0x14), Is.EqualTo(4u));
            Assert.That(rig.Device.SaveState()[^(4 * 33)..], Is.EqualTo(before[^(4 * 33)..]), "every slot as it was");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_42_WithoutTheFeatureNegotiated_AWriteIsAnErrorAndTracksNothing()
    {
        var clock = new FakeVcpuClock(4);
        using var rig = new WatchdogRig(Options(), vcpuClock: clock);
        rig.WriteConfig32(Heartbeat, 1u << 16);                 // before negotiation
        rig.Activate(WatchdogFeatures.Control);                 // VCPU_STALL offered, not accepted
        rig.WriteConfig32(Heartbeat, 1u << 16);
        Run(rig, clock, TimeSpan.FromSeconds(10), [0]);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.EqualTo(2));
            Assert.That(rig.Drain<VcpuStalledEvent>(), Is.Empty);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_42_PetStorm_NoTimerWorkPerPet_OneClockReadPerPet_LogBounded()
    {
        var clock = new FakeVcpuClock(4);
        var logger = new FakeLogger();
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        using var device = new WatchdogDevice(Options(), time, logger, clock);
        var context = new TestDeviceContext(Virtio.Memory.GuestMemory.CreateAnonymous(4096, 0x1000), (ulong)WatchdogFeatures.VcpuStall | VirtioFeatures.Version1, [new(16), new(16), new(16)]);
        device.Activate(context);
        Span<byte> value = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(value, 1u | 1u << 16);
        device.WriteConfig(Heartbeat, value);
        long due = Volatile.Read(ref device.VcpuMonitor!.DueHint);
        int reads = clock.Calls;

        for (int i = 0; i < 100_000; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(value, (uint)(i % 4) | (uint)(i % 32767 + 1) << 16);
            device.WriteConfig(Heartbeat, value);
        }

        long dueAfter = Volatile.Read(ref device.VcpuMonitor!.DueHint);
        int readsAfter = clock.Calls;
        for (int i = 0; i < 100_000; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(value, 1000u + (uint)i % 1000);
            device.WriteConfig(Heartbeat, value);       // hostile indices
        }

        Assert.Multiple(() =>
        {
            Assert.That(dueAfter, Is.EqualTo(due), "pets of tracked vCPUs never reschedule the check (three untracked ones started: their deadlines come later)");
            Assert.That(readsAfter - reads, Is.EqualTo(100_000), "one clock read per pet");
            Assert.That(device.GetStatus().TrackedVcpus, Is.EqualTo(4));
            Assert.That(device.GetStatus().ProtocolErrors, Is.EqualTo(100_000), "every hostile write counted");
            Assert.That(logger.Collector.GetSnapshot().Count(r => r.Id.Id == 5006), Is.EqualTo(10), "and the log is rate-limited");
        });
    }

    // --- WDT-DEV-43: stage one in the vCPU's run time ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_43_OneVcpuStalls_WhileTheOthersRunAndPet_ExactlyAtItsTimeout()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock);
        for (int v = 0; v < 4; v++)
        {
            Pet(rig, v);
        }

        // vCPUs 0, 1, 3 pet every 500 ms; vCPU 2 runs (interrupts off) and never pets again.
        Run(rig, clock, s_timeout - s_tick, [0, 1, 2, 3], step: TimeSpan.FromMilliseconds(500) - s_tick / 4, eachStep: () =>
        {
            Pet(rig, 0);
            Pet(rig, 1);
            Pet(rig, 3);
        });
        Assert.That(rig.Drain<VcpuStalledEvent>(), Is.Empty, "not one tick before its timeout");

        Run(rig, clock, s_tick, [0, 1, 2, 3]);
        VcpuStalledEvent stall = rig.Drain<VcpuStalledEvent>().Single();
        Assert.Multiple(() =>
        {
            Assert.That(stall.Vcpu, Is.EqualTo(2));
            Assert.That(stall.VcpuId, Is.EqualTo(2u));
            Assert.That(stall.StalledFor, Is.EqualTo(s_timeout));
            Assert.That(stall.Timeout, Is.EqualTo(s_timeout));
            Assert.That(stall.SecondStage, Is.EqualTo(s_stage2));
            Assert.That(stall.IsCritical, Is.True);
            Assert.That(rig.Device.GetStatus() is { StalledVcpus: 1, TrackedVcpus: 3, VcpuClock: VcpuClockSource.VcpuRunTime });
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_43_HaltedIdleVcpu_ItsClockStandsStill_NeverStalls()
    {
        var clock = new FakeVcpuClock(2);
        using WatchdogRig rig = Started(clock, options: Options(vcpus: 2));
        Pet(rig, 0);
        Pet(rig, 1);

        // vCPU 1 sits in HLT for an hour of VM run time; vCPU 0 runs and pets.
        Run(rig, clock, TimeSpan.FromHours(1), [0], step: TimeSpan.FromSeconds(1), eachStep: () => Pet(rig, 0));

        // vCPU 1 wakes and runs one timeout without petting: now it stalls.
        Run(rig, clock, s_timeout, [0, 1], eachStep: () => Pet(rig, 0));
        Assert.That(rig.Drain<VcpuStalledEvent>().Select(e => (e.Vcpu, e.StalledFor)), Is.EqualTo(new[] { (1, s_timeout) }));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_43_PausedVm_NothingFires_RunTimeStopsThenContinues()
    {
        using WatchdogRig rig = Started(clock: null);
        Pet(rig, 0);
        Run(rig, null, TimeSpan.FromSeconds(1), []);
        rig.Device.Pause();
        Run(rig, null, TimeSpan.FromMinutes(5), []);
        Assert.That(rig.Drain<VcpuStalledEvent>(), Is.Empty, "paused: nothing counts");

        rig.Device.Resume();
        Run(rig, null, TimeSpan.FromSeconds(1) - s_tick, [], step: TimeSpan.FromSeconds(1));
        Assert.That(rig.Drain<VcpuStalledEvent>(), Is.Empty, "1 s before the pause + 1 s after, less a tick");
        Run(rig, null, s_tick, []);
        Assert.That(rig.Drain<VcpuStalledEvent>().Single().StalledFor, Is.EqualTo(s_timeout));
    }

    [Test]
    public void VcpuHaltedJustShortOfItsDeadline_ChecksStayBounded_ItStallsWhenItRunsAgain()
    {
        var clock = new FakeVcpuClock(1);
        using WatchdogRig rig = Started(clock, options: Options(vcpus: 1));
        Pet(rig, 0);
        clock.Ran(0, s_timeout - s_tick);   // then HLT, one tick before its deadline
        int before = clock.Calls;

        Run(rig, clock, TimeSpan.FromMinutes(10), [], step: TimeSpan.FromMilliseconds(1));
        int checks = clock.Calls - before;
        Assert.That(checks, Is.LessThanOrEqualTo(600 * 1000 / 20 + 1), "at most one check per 1% of the timeout (20 ms), not one per millisecond");
        Assert.That(rig.Drain<VcpuStalledEvent>(), Is.Empty, "a halted vCPU's clock stands still");

        Run(rig, clock, TimeSpan.FromMilliseconds(20), [0], step: TimeSpan.FromMilliseconds(1));
        Assert.That(rig.Drain<VcpuStalledEvent>().Single().StalledFor, Is.GreaterThanOrEqualTo(s_timeout));
    }

    // --- WDT-DEV-44: the notice ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_44_NoticeLayout_WaitsForABuffer_ThenStage2LeftAtDelivery()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock);
        Pet(rig, 3);
        Run(rig, clock, s_timeout, [3]);
        Assert.That(rig.Drain<VcpuStalledEvent>(), Has.Count.EqualTo(1), "the host hears of it at once");

        Run(rig, clock, TimeSpan.FromSeconds(1), [3]);
        ulong buffer = rig.PostNoticeBuffer();
        UsedBuffer used = rig.TakeUsed(2);
        var n = ReadNotice(rig, buffer);
        Assert.Multiple(() =>
        {
            Assert.That(used.Length, Is.EqualTo(16u));
            Assert.That(n.Type, Is.EqualTo(2), "VCPU_STALL");
            Assert.That(n.Vcpu, Is.EqualTo(3));
            Assert.That(n.StalledMs, Is.EqualTo(2000u));
            Assert.That(n.TimeoutMs, Is.EqualTo(2000u));
            Assert.That(n.Stage2Ms, Is.EqualTo(2000u), "3 s less the second that passed before the buffer came");
            Assert.That(rig.TryTakeUsed(2, out _), Is.False, "one notice");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_44_NoticesInTheOrderTheyFired_WithAPretimeoutNoticeBetween()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock, WatchdogFeatures.VcpuStall | WatchdogFeatures.Control | WatchdogFeatures.Pretimeout, Options());
        Assert.That(rig.Control(2, 5_000).Status, Is.Zero);        // START, 5 s
        Assert.That(rig.Control(6, 3_500).Status, Is.Zero);        // pretimeout point at 1.5 s
        Pet(rig, 2);                                               // stalls at 2 s
        Run(rig, clock, TimeSpan.FromSeconds(1), [0, 1, 2, 3]);
        Pet(rig, 0);                                               // stalls at 3 s
        Run(rig, clock, TimeSpan.FromSeconds(2.5), [0, 1, 2, 3]);   // no keepalive: the pretimeout notice stays pending (expiry at 5 s)
        Assert.That(rig.Drain<VcpuStalledEvent>().Select(e => e.Vcpu), Is.EqualTo(new[] { 2, 0 }));

        ulong[] buffers = [rig.PostNoticeBuffer(notify: false), rig.PostNoticeBuffer(notify: false), rig.PostNoticeBuffer(notify: false), rig.PostNoticeBuffer()];
        var notices = buffers.Take(3).Select(b => ReadNotice(rig, b)).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(notices.Select(n => (n.Type, n.Vcpu)), Is.EqualTo(new[] { ((ushort)1, (ushort)0), ((ushort)2, (ushort)2), ((ushort)2, (ushort)0) }),
                "pretimeout (1.5 s), vCPU 2 (2 s), vCPU 0 (3 s)");
            Assert.That(rig.TakeUsed(2).Length + rig.TakeUsed(2).Length + rig.TakeUsed(2).Length, Is.EqualTo(48u));
            Assert.That(rig.TryTakeUsed(2, out _), Is.False, "the fourth buffer stays posted");
        });
    }

    // --- WDT-DEV-45: recovery ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_45_PetOfAStalledVcpu_Recovers_DiscardsTheNotice_NoStageTwo()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock);
        Pet(rig, 1);
        Run(rig, clock, s_timeout, [1]);
        Run(rig, clock, TimeSpan.FromSeconds(1), [1]);
        Pet(rig, 1);

        VcpuRecoveredEvent recovered = rig.Drain<VcpuRecoveredEvent>().Single();
        rig.PostNoticeBuffer();
        Run(rig, clock, s_stage2 + TimeSpan.FromSeconds(1), [], step: TimeSpan.FromSeconds(1));
        Assert.Multiple(() =>
        {
            Assert.That(recovered.Vcpu, Is.EqualTo(1));
            Assert.That(recovered.SinceStall, Is.EqualTo(TimeSpan.FromSeconds(1)));
            Assert.That(recovered.IsCritical, Is.True);
            Assert.That(rig.TryTakeUsed(2, out _), Is.False, "the undelivered notice was discarded");
            Assert.That(rig.Drain<VcpuStallExpiredEvent>(), Is.Empty, "no stage two");
            Assert.That(rig.Device.GetStatus() is { TrackedVcpus: 1, StalledVcpus: 0 }, "tracked with a new countdown (the vCPU is halted, so it does not stall again)");
        });
    }

    [Test]
    public void RecoveredVcpu_StallsAgainAfterANewFullTimeout()
    {
        var clock = new FakeVcpuClock(1);
        using WatchdogRig rig = Started(clock, options: Options(vcpus: 1));
        Pet(rig, 0);
        Run(rig, clock, s_timeout, [0]);
        Pet(rig, 0);
        Run(rig, clock, s_timeout - s_tick, [0], step: TimeSpan.FromSeconds(1));
        Assert.That(rig.Drain<VcpuStalledEvent>(), Has.Count.EqualTo(1));
        Run(rig, clock, s_tick, [0]);
        Assert.That(rig.Drain<VcpuStalledEvent>(), Has.Count.EqualTo(1));
    }

    // --- WDT-DEV-46: stage two ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_46_StageTwo_InVmRunTime_ExactlyAfterTheSecondStage_UntracksAndDiscardsTheNotice()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock);
        Pet(rig, 0);
        Run(rig, clock, s_timeout, [0]);
        Assert.That(rig.Drain<VcpuStalledEvent>(), Has.Count.EqualTo(1));

        // Stage two counts VM run time: the vCPU's own clock stands still (it is descheduled) and it still fires.
        Run(rig, clock, s_stage2 - s_tick, [], step: TimeSpan.FromSeconds(1));
        Assert.That(rig.Drain<VcpuStallExpiredEvent>(), Is.Empty, "not one tick early");
        Run(rig, clock, s_tick, []);

        VcpuStallExpiredEvent expired = rig.Drain<VcpuStallExpiredEvent>().Single();
        rig.PostNoticeBuffer();
        Run(rig, clock, TimeSpan.FromSeconds(30), [0], step: TimeSpan.FromSeconds(1));
        Assert.Multiple(() =>
        {
            Assert.That(expired.Vcpu, Is.EqualTo(0));
            Assert.That(expired.SinceStall, Is.EqualTo(s_stage2));
            Assert.That(expired.StalledFor, Is.EqualTo(s_timeout));
            Assert.That(expired.IsCritical, Is.True);
            Assert.That(rig.TryTakeUsed(2, out _), Is.False, "its notice was discarded");
            Assert.That(rig.DrainEvents().OfType<VcpuStalledEvent>(), Is.Empty, "untracked: nothing more until it pets");
            Assert.That(rig.Device.GetStatus() is { TrackedVcpus: 0, StalledVcpus: 0 });
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_46_FirstPetAfterStageTwo_IsReportedAsARecovery_OnceAndNotAfterOffline()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock);
        Pet(rig, 0);
        Pet(rig, 1);
        Run(rig, clock, s_timeout, [0, 1]);
        Assert.That(rig.Drain<VcpuStalledEvent>(), Has.Count.EqualTo(2));
        Run(rig, clock, s_stage2, []);
        Assert.That(rig.Drain<VcpuStallExpiredEvent>(), Has.Count.EqualTo(2));

        // vCPU 0 pets again later: a recovery, counted from stage one; its second pet is not another one.
        Run(rig, clock, TimeSpan.FromSeconds(3), []);
        Pet(rig, 0);
        Pet(rig, 0);

        // vCPU 1 goes OFFLINE first: its later pet only tracks it afresh.
        Offline(rig, 1);
        Pet(rig, 1);

        List<VcpuRecoveredEvent> recovered = rig.Drain<VcpuRecoveredEvent>();
        Assert.Multiple(() =>
        {
            Assert.That(recovered.Select(r => r.Vcpu), Is.EqualTo(new[] { 0 }));
            Assert.That(recovered.Single().SinceStall, Is.EqualTo(s_stage2 + TimeSpan.FromSeconds(3)));
            Assert.That(rig.Device.GetStatus() is { TrackedVcpus: 2, StalledVcpus: 0 });
        });
    }

    // --- WDT-DEV-47: panic and reset ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_47_PanickedWrite_UntracksEveryVcpu_DiscardsEveryNotice() => PanicTakesOver(1);

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_47_CrashLoadedWrite_UntracksEveryVcpu_DiscardsEveryNotice() => PanicTakesOver(2);

    private void PanicTakesOver(uint panicEvents)
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock, WatchdogFeatures.VcpuStall | WatchdogFeatures.PanicConfig, Options());
        Pet(rig, 0);
        Pet(rig, 1);
        Pet(rig, 2);
        Run(rig, clock, s_timeout, [0]);
        Assert.That(rig.Drain<VcpuStalledEvent>(), Has.Count.EqualTo(1));

        rig.WriteConfig32(0x08, panicEvents);
        rig.PostNoticeBuffer();
        Run(rig, clock, TimeSpan.FromMinutes(1), [0, 1, 2, 3], step: TimeSpan.FromSeconds(1));

        List<WatchdogEvent> events = rig.DrainEvents();
        Assert.Multiple(() =>
        {
            Assert.That(events.OfType<GuestReportEvent>().ToList(), Has.Count.EqualTo(1));
            Assert.That(events.Where(e => e.Kind is WatchdogEventKind.VcpuStalled or WatchdogEventKind.VcpuStallExpired), Is.Empty,
                "the panic path owns the VM: stopped CPUs are not reported");
            Assert.That(rig.TryTakeUsed(2, out _), Is.False, "the pending notice was discarded");
            Assert.That(rig.Device.GetStatus() is { TrackedVcpus: 0, StalledVcpus: 0 });
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_47_DeviceReset_UntracksEveryVcpu_ANewDriverPetsAfresh()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock);
        Pet(rig, 0);
        Pet(rig, 1);
        Run(rig, clock, s_timeout, [0]);
        rig.DrainEvents();

        rig.ResetDevice();
        Run(rig, clock, TimeSpan.FromMinutes(1), [0, 1], step: TimeSpan.FromSeconds(1));
        Assert.That(rig.DrainEvents().Where(e => e.Kind is WatchdogEventKind.VcpuStalled or WatchdogEventKind.VcpuStallExpired), Is.Empty);

        rig.Activate(WatchdogFeatures.VcpuStall);
        ulong buffer = rig.PostNoticeBuffer();
        Pet(rig, 1);
        Run(rig, clock, s_timeout, [1]);
        Assert.That(ReadNotice(rig, buffer).Vcpu, Is.EqualTo(1), "no stale notice of vCPU 0 comes first");
    }

    // --- WDT-DEV-48: resume grace, snapshot, suspension ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_48_AfterResume_NeitherStageFiresBeforeTheGrace()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock, options: Options(grace: TimeSpan.FromSeconds(5)));
        Pet(rig, 0);
        Pet(rig, 1);
        Run(rig, clock, s_timeout, [1]);      // vCPU 1 stalled: stage two due 3 s later
        Run(rig, clock, TimeSpan.FromSeconds(1.5), [0, 1]);   // vCPU 0 at 1.5 s of 2
        rig.DrainEvents();
        rig.Device.Pause();
        rig.Device.Resume();

        Run(rig, clock, TimeSpan.FromSeconds(5) - s_tick, [0, 1], step: TimeSpan.FromSeconds(1));
        Assert.That(rig.DrainEvents().Where(e => e.Kind is WatchdogEventKind.VcpuStalled or WatchdogEventKind.VcpuStallExpired), Is.Empty, "inside the grace");

        Run(rig, clock, s_tick, [0, 1]);
        List<WatchdogEvent> events = rig.DrainEvents();
        Assert.Multiple(() =>
        {
            Assert.That(events.OfType<VcpuStalledEvent>().Single().Vcpu, Is.EqualTo(0), "stage one when the grace ends");
            Assert.That(events.OfType<VcpuStallExpiredEvent>().Single().Vcpu, Is.EqualTo(1), "stage two when the grace ends");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_48_SnapshotMidStall_RestoreKeepsTheStage_TheNoticeAndTheCountdowns()
    {
        byte[] saved;
        var clock = new FakeVcpuClock(4);
        using (WatchdogRig source = Started(clock))
        {
            Pet(source, 0);
            Pet(source, 2);
            Run(source, clock, s_timeout, [2]);          // 2 stalled at 2 s; 0 halted at 0 s of 2
            Run(source, clock, TimeSpan.FromSeconds(1), [0, 2]);   // 2: 1 s of 3 into stage two; 0: 1 s of 2
            source.DrainEvents();
            source.Device.Pause();
            saved = source.Device.SaveState();
        }

        // Another host: its vCPU clocks start elsewhere.
        var other = new FakeVcpuClock(4, origin: TimeSpan.FromHours(7));
        using var target = new WatchdogRig(Options(), vcpuClock: other);
        Assert.That(target.Device.RestoreState(saved), Is.EqualTo(SnapshotStatus.Ok));
        target.Activate(WatchdogFeatures.VcpuStall);
        Assert.That(target.Device.GetStatus() is { TrackedVcpus: 1, StalledVcpus: 1 });
        target.Device.Resume();

        ulong buffer = target.PostNoticeBuffer();
        Assert.That(ReadNotice(target, buffer) is { Type: 2, Vcpu: 2, StalledMs: 2000, Stage2Ms: 2000 }, "the pending notice survived");
        Run(target, other, TimeSpan.FromSeconds(1) - s_tick, [0, 2], step: TimeSpan.FromSeconds(1));
        Assert.That(target.DrainEvents().Where(e => e.Kind is WatchdogEventKind.VcpuStalled or WatchdogEventKind.VcpuStallExpired), Is.Empty);
        Run(target, other, s_tick, [0, 2]);
        Assert.That(target.Drain<VcpuStalledEvent>().Single().Vcpu, Is.EqualTo(0), "vCPU 0's countdown went on where it was");
        Run(target, other, TimeSpan.FromSeconds(1), [0, 2]);
        Assert.That(target.Drain<VcpuStallExpiredEvent>().Single() is { Vcpu: 2, SinceStall.TotalSeconds: 3 }, "vCPU 2 kept its stage");
    }

    // The mark of a slot whose stage two fired travels with the snapshot: its first pet on the
    // other host is a recovery (a host's stall escalation waits for it), counted from stage one.
    [Test]
    [Category("Conformance")]
    public void WDT_DEV_46_SnapshotAfterStageTwo_FirstPetAfterTheRestoreIsARecovery()
    {
        byte[] saved;
        var clock = new FakeVcpuClock(4);
        using (WatchdogRig source = Started(clock))
        {
            Pet(source, 0);
            Pet(source, 1);
            Run(source, clock, s_timeout, [1]);          // vCPU 1 runs without petting; vCPU 0 is halted
            Run(source, clock, s_stage2, [1]);
            Assert.That(source.Drain<VcpuStallExpiredEvent>().Single().Vcpu, Is.EqualTo(1));
            source.DrainEvents();
            source.Device.Pause();
            saved = source.Device.SaveState();
        }

        var other = new FakeVcpuClock(4, origin: TimeSpan.FromHours(7));
        using var target = new WatchdogRig(Options(), vcpuClock: other);
        Assert.That(target.Device.RestoreState(saved), Is.EqualTo(SnapshotStatus.Ok));
        target.Activate(WatchdogFeatures.VcpuStall);
        target.Device.Resume();
        Run(target, other, TimeSpan.FromSeconds(1), [0, 1]);
        Pet(target, 0);
        Pet(target, 1);
        Pet(target, 1);

        List<VcpuRecoveredEvent> recovered = target.Drain<VcpuRecoveredEvent>();
        Assert.Multiple(() =>
        {
            Assert.That(recovered.Select(r => r.Vcpu), Is.EqualTo(new[] { 1 }), "vCPU 1 only, once");
            Assert.That(recovered.Single().SinceStall, Is.EqualTo(s_stage2 + TimeSpan.FromSeconds(1)));
            Assert.That(target.Device.SaveState(), Is.Not.EqualTo(saved));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_48_Suspended_SlotsKept_NothingFires_ResumeContinues()
    {
        using WatchdogRig rig = Started(clock: null);
        Pet(rig, 1);
        Run(rig, null, TimeSpan.FromSeconds(1), []);
        Assert.That(rig.Device.Suspend(), Is.True);
        Run(rig, null, TimeSpan.FromMinutes(10), [], step: TimeSpan.FromSeconds(1));
        Assert.That(rig.Drain<VcpuStalledEvent>(), Is.Empty, "the clock is stopped while suspended");

        Assert.That(rig.Device.TryResume(rig.Context!), Is.True);
        Assert.That(rig.Device.GetStatus().TrackedVcpus, Is.EqualTo(1), "the slot was kept");
        Run(rig, null, TimeSpan.FromSeconds(1), []);
        Assert.That(rig.Drain<VcpuStalledEvent>().Single().StalledFor, Is.EqualTo(s_timeout));
    }

    [Test]
    public void Restore_Version1Image_EveryVcpuUntracked()
    {
        using var rig = new WatchdogRig(Options());
        byte[] saved = rig.Device.SaveState();
        int vcpuPart = 4 + 8 + 8 + 4 * 33;
        byte[] v1 = saved[..^vcpuPart];
        BinaryPrimitives.WriteInt32LittleEndian(v1.AsSpan(4), 1);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Device.RestoreState(v1), Is.EqualTo(SnapshotStatus.Ok));
            Assert.That(rig.Device.GetStatus().TrackedVcpus, Is.Zero);
        });
    }

    [Test]
    public void Restore_HostileVcpuPart_Refused_DeviceUnchanged()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock);
        Pet(rig, 1);
        Run(rig, clock, s_timeout, [1]);
        rig.Device.Pause();
        byte[] saved = rig.Device.SaveState();
        int slots = saved.Length - 4 * 33;
        byte[] before = rig.Device.SaveState();

        byte[] Mutate(Action<byte[]> change)
        {
            byte[] copy = [.. saved];
            change(copy);
            return copy;
        }

        byte[][] hostile =
        [
            Mutate(b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(slots - 20), 5)),                  // another vCPU count
            Mutate(b => b[slots] = 4),                                                                           // unknown state
            Mutate(b => (b[slots], b[slots + 1]) = (3, 1)),                                                      // after stage two, with a time since its pet
            Mutate(b => { b[slots] = 3; BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(slots + 9), long.MaxValue); }),   // after stage two, stage one after the run time
            Mutate(b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(slots + 1), 5)),                       // untracked slot with a time
            Mutate(b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(slots + 33 + 17), 1)),                 // stalled for less than the timeout
            Mutate(b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(slots + 33 + 9), long.MaxValue)),      // stage one after the run time
            Mutate(b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(slots + 33 + 1), -1)),                 // negative run time since the pet
            Mutate(b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(slots - 16), long.MaxValue / 2)),      // grace floor far ahead
            Mutate(b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(slots - 8), 7)),                       // pretimeout order without a notice
        ];

        Assert.Multiple(() =>
        {
            for (int i = 0; i < hostile.Length; i++)
            {
                Assert.That(rig.Device.RestoreState(hostile[i]), Is.EqualTo(SnapshotStatus.InvalidState), $"image {i}");
            }

            Assert.That(rig.Device.RestoreState(saved.AsSpan(0, saved.Length - 3)), Is.EqualTo(SnapshotStatus.Malformed));
            Assert.That(rig.Device.SaveState(), Is.EqualTo(before), "a refused image changes nothing");
        });
    }

    // --- WDT-DEV-49: fallback ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_49_WithoutAVcpuClock_VmRunTimeForEveryVcpu_AndTheStatusSaysSo()
    {
        using WatchdogRig rig = Started(clock: null);
        Pet(rig, 0);
        Pet(rig, 1);
        Run(rig, null, TimeSpan.FromSeconds(1), [], eachStep: () => Pet(rig, 0));
        Run(rig, null, TimeSpan.FromSeconds(1) - s_tick, [], step: TimeSpan.FromSeconds(1));
        Assert.That(rig.Drain<VcpuStalledEvent>(), Is.Empty);
        Run(rig, null, s_tick, []);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Drain<VcpuStalledEvent>().Select(e => e.Vcpu), Is.EqualTo(new[] { 1 }), "an idle vCPU counts VM run time here");
            Assert.That(rig.Device.GetStatus().VcpuClock, Is.EqualTo(VcpuClockSource.VmRunTime));
        });
    }

    // --- §4.1: whole images ---

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_38_VcpuHeartbeatInTheImage_EachNewValueOnePet_TheCopyWrittenBackIsNot()
    {
        var clock = new FakeVcpuClock(4);
        using WatchdogRig rig = Started(clock, WatchdogFeatures.VcpuStall | WatchdogFeatures.PanicConfig, Options());
        byte[] image = new byte[36];
        rig.Device.ReadConfig(0, image);

        // The front end replaces vcpu_heartbeat in its copy and forwards all 36 bytes.
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x20), 2u | 1u << 16);
        rig.Device.WriteConfig(0, image);
        Assert.That(rig.Device.GetStatus().TrackedVcpus, Is.EqualTo(1), "one pet");

        Run(rig, clock, TimeSpan.FromSeconds(1.5), [2]);
        rig.Device.WriteConfig(0, image);   // the same copy again (another field written): not a pet
        Run(rig, clock, TimeSpan.FromSeconds(0.5), [2]);
        Assert.That(rig.Drain<VcpuStalledEvent>(), Has.Count.EqualTo(1), "the repeated image did not restart the countdown");

        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x20), 2u | 2u << 16);
        rig.Device.WriteConfig(0, image);   // the next sequence: a pet (recovery)
        Assert.That(rig.Drain<VcpuRecoveredEvent>(), Has.Count.EqualTo(1));

        rig.Device.ReadConfig(0, image);    // reads 0 again
        rig.Device.WriteConfig(0, image);
        Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.Zero, "no image counted as an error");
    }
}
