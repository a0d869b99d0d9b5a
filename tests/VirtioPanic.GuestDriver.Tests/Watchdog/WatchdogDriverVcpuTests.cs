using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.GuestDriver.Watchdog;

namespace VirtioPanic.GuestDriver.Tests.Watchdog;

// The driver's per-CPU side of VIRTIO_WDT_F_VCPU_STALL (spec §6.12) against the real device, on
// the virtual clock: the vcpu_heartbeat encoding, per-CPU hrtimers, a hard-locked CPU's notice and
// the guest's panic naming it.
[TestFixture(VirtioTransportKind.Pci)]
[TestFixture(VirtioTransportKind.Mmio)]
public sealed class WatchdogDriverVcpuTests
{
    private const uint Heartbeat = 0x20;
    private readonly VirtioTransportKind _transport;

    public WatchdogDriverVcpuTests(VirtioTransportKind transport) => _transport = transport;

    [Test]
    public void Probe_WithVcpuStall_ReadsTheSlotsAndTimeouts_AndPostsNoticeBuffers()
    {
        using WatchdogRig rig = Rig(vcpus: 3);

        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { Features = (WatchdogFeatures.All | WatchdogFeatures.VcpuStall) & ~WatchdogFeatures.Pretimeout });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(driver.Features & WatchdogFeatures.VcpuStall, Is.EqualTo(WatchdogFeatures.VcpuStall));
            Assert.That((driver.VcpuCount, driver.VcpuTimeout, driver.VcpuStage2, driver.VcpuPetInterval), Is.EqualTo((3, TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(1))));
            Assert.That(rig.Spy.ChainsOn(2).Count(c => c.AtActivation), Is.EqualTo(2), "noticeq is set up for VCPU_STALL alone (WDT-DRV-20)");
        }
    }

    [Test]
    public void PetVcpu_OneFourByteWrite_IndexAndAPerCpuSequence_ThatNeverRepeatsOrIsZero()
    {
        using WatchdogRig rig = Rig(vcpus: 2);
        WatchdogDriver driver = rig.Probe();

        WatchdogResult[] results = rig.Run(() =>
        {
            var r = new List<WatchdogResult> { driver.PetVcpu(0), driver.PetVcpu(1), driver.PetVcpu(0) };
            for (int i = 0; i < 32767; i++)
            {
                r.Add(driver.PetVcpu(1));
            }

            r.Add(driver.OfflineVcpu(0));
            return r.ToArray();
        });
        ConfigAccess[] writes = [.. rig.Spy.ConfigAccesses.Where(a => a.Write && a.Offset == Heartbeat)];
        uint[] cpu1 = [.. writes.Select(w => w.Value).Where(v => (v & 0xFFFF) == 1)];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(results, Is.All.EqualTo(WatchdogResult.Ok));
            Assert.That(writes, Has.Length.EqualTo(32771));
            Assert.That(writes.Select(w => w.Width), Is.All.EqualTo(4));
            Assert.That(writes.Take(3).Select(w => w.Value), Is.EqualTo(new uint[] { 0x0001_0000, 0x0001_0001, 0x0002_0000 }));
            Assert.That(cpu1[32766], Is.EqualTo(0x7FFF_0001u), "the last sequence before the wrap");
            Assert.That(cpu1[32767], Is.EqualTo(0x0001_0001u), "the sequence wraps to 1, skipping 0");
            Assert.That(cpu1.Zip(cpu1.Skip(1)).Where(p => p.First == p.Second), Is.Empty, "two writes of one CPU in a row always differ");
            Assert.That(writes.Select(w => w.Value), Has.None.EqualTo(0u));
            Assert.That(writes[^1].Value, Is.EqualTo(0x8003_0000u), "OFFLINE: bit 31, CPU 0's next sequence");
            Assert.That(rig.Device.GetStatus().TrackedVcpus, Is.EqualTo(1), "CPU 0 went offline, CPU 1 is tracked");
        }
    }

    [Test]
    public void PetVcpu_IndexOutOfRangeOrFeatureNotNegotiated_WritesNothing()
    {
        using WatchdogRig rig = Rig(vcpus: 2);
        WatchdogDriver driver = rig.Probe();
        using WatchdogRig plain = Rig(vcpus: 2);
        WatchdogDriver without = plain.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.All });

        (WatchdogResult high, WatchdogResult negative, WatchdogResult start) = rig.Run(() => (driver.PetVcpu(2), driver.PetVcpu(-1), driver.StartVcpuPetting([0, 2])));
        (WatchdogResult notNegotiated, WatchdogResult startWithout) = plain.Run(() => (without.PetVcpu(0), without.StartVcpuPetting()));

        using (Assert.EnterMultipleScope())
        {
            Assert.That((high, negative, start), Is.EqualTo((WatchdogResult.InvalidArgument, WatchdogResult.InvalidArgument, WatchdogResult.InvalidArgument)));
            Assert.That((notNegotiated, startWithout), Is.EqualTo((WatchdogResult.NotSupported, WatchdogResult.NotSupported)));
            Assert.That(without.VcpuCount, Is.Zero);
            Assert.That(rig.Spy.ConfigAccesses.Concat(plain.Spy.ConfigAccesses).Where(a => a.Write && a.Offset == Heartbeat), Is.Empty);
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.Zero);
        }
    }

    [Test]
    public void StartVcpuPetting_EveryCpuStaysTracked_AHardLockedCpuGetsTheNotice_AndTheGuestPanicsNamingIt()
    {
        using WatchdogRig rig = Rig(vcpus: 2);
        WatchdogDriver driver = rig.Probe();
        var handled = new List<(VcpuStallNotice Notice, PanicReportPath? Path)>();
        rig.Run(() =>
        {
            driver.VcpuStallHandler = (notice, path) => handled.Add((notice, path));
            return driver.StartVcpuPetting();
        });

        rig.Advance(TimeSpan.FromSeconds(30));
        List<VcpuStalledEvent> whilePetting = rig.EventsOf<VcpuStalledEvent>();
        WatchdogDeviceStatus petting = rig.Device.GetStatus();
        bool onlyCpuOneStopped = rig.Run(() =>
        {
            driver.StallCpu(1);
            return driver.IsPettingVcpu(0) && !driver.IsPettingVcpu(1);
        });
        rig.Advance(TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(250));

        GuestPanickedEvent panic = rig.EventsOf<GuestPanickedEvent>().Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(whilePetting, Is.Empty);
            Assert.That((petting.TrackedVcpus, petting.StalledVcpus), Is.EqualTo((2, 0)));
            Assert.That(onlyCpuOneStopped, Is.True);
            Assert.That(driver.IsPettingVcpu(0) || driver.IsPettingVcpu(1), Is.False, "a panicked kernel runs no hrtimers");
            Assert.That(rig.EventsOf<VcpuStalledEvent>().Select(e => e.Vcpu), Is.EqualTo(new[] { 1 }), "only the CPU that stopped");
            Assert.That(driver.VcpuStallNotices.Select(n => (n.Vcpu, n.Timeout)), Is.EqualTo(new[] { (1, TimeSpan.FromSeconds(4)) }));
            Assert.That(driver.VcpuStallNotices[0].StalledFor, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(4)));
            Assert.That(handled.Select(h => (h.Notice.Vcpu, h.Path)), Is.EqualTo(new[] { (1, (PanicReportPath?)PanicReportPath.EventRecord) }));
            Assert.That(panic.Message, Does.StartWith("virtio_wdt: vCPU 1 stalled for ").And.EndWith(" ms"));
            Assert.That(panic.Message, Is.EqualTo(WatchdogDriver.VcpuStallMessage(driver.VcpuStallNotices[0])));
            Assert.That(rig.EventsOf<VcpuStallExpiredEvent>(), Is.Empty, "the panic takes over: no stage two");
        }
    }

    [Test]
    public void VcpuStallNotice_WithVcpuStallPanicOff_IsOnlyLogged()
    {
        using WatchdogRig rig = Rig(vcpus: 2);
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { VcpuStallPanic = false });
        var handled = new List<(VcpuStallNotice Notice, PanicReportPath? Path)>();
        rig.Run(() =>
        {
            driver.VcpuStallHandler = (notice, path) => handled.Add((notice, path));
            WatchdogResult started = driver.StartVcpuPetting();
            driver.StallCpu(0);
            return started;
        });

        rig.Advance(TimeSpan.FromSeconds(8), TimeSpan.FromMilliseconds(250));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(handled.Select(h => (h.Notice.Vcpu, h.Path)), Is.EqualTo(new[] { (0, (PanicReportPath?)null) }));
            Assert.That(rig.EventsOf<GuestPanickedEvent>(), Is.Empty);
            Assert.That(rig.EventsOf<VcpuStallExpiredEvent>().Select(e => e.Vcpu), Is.EqualTo(new[] { 0 }), "nobody panicked, so the device's stage two came");
        }
    }

    [Test]
    public void StopVcpuPetting_WritesOfflineForEveryCpuItPetted()
    {
        using WatchdogRig rig = Rig(vcpus: 4);
        WatchdogDriver driver = rig.Probe();
        rig.Run(() => driver.StartVcpuPetting([0, 2, 3]));
        rig.Advance(TimeSpan.FromSeconds(3));

        rig.Run(() =>
        {
            driver.StopVcpuPetting();
            return 0;
        });
        int writesAfterStop = rig.Spy.ConfigAccesses.Count(a => a.Write && a.Offset == Heartbeat);
        rig.Advance(TimeSpan.FromSeconds(20));

        uint[] offline = [.. rig.Spy.ConfigAccesses.Where(a => a.Write && a.Offset == Heartbeat && (a.Value & 0x8000_0000) != 0).Select(a => a.Value & 0xFFFF)];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(offline, Is.EqualTo(new uint[] { 0, 2, 3 }));
            Assert.That(rig.Spy.ConfigAccesses.Count(a => a.Write && a.Offset == Heartbeat), Is.EqualTo(writesAfterStop), "no hrtimer pets after teardown");
            Assert.That(rig.Device.GetStatus().TrackedVcpus, Is.Zero);
            Assert.That(rig.EventsOf<VcpuStalledEvent>(), Is.Empty);
        }
    }

    private WatchdogRig Rig(int vcpus) => new(_transport, new WatchdogDeviceOptions
    {
        DefaultTimeout = TimeSpan.FromSeconds(20),
        MinTimeout = TimeSpan.FromSeconds(2),
        MaxTimeout = TimeSpan.FromMinutes(10),
        VcpuCount = vcpus,
        VcpuStallTimeout = TimeSpan.FromSeconds(4),
        VcpuStallSecondStage = TimeSpan.FromSeconds(3),
    });
}
