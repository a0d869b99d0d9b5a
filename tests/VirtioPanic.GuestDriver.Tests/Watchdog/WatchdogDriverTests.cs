using System.Text;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.GuestDriver.Watchdog;

namespace VirtioPanic.GuestDriver.Tests.Watchdog;

// The full driver end to end over PCI and MMIO, on the virtual clock.
[TestFixture(VirtioTransportKind.Pci)]
[TestFixture(VirtioTransportKind.Mmio)]
public sealed class WatchdogDriverTests
{
    private readonly VirtioTransportKind _transport;

    public WatchdogDriverTests(VirtioTransportKind transport) => _transport = transport;

    [Test]
    public void Probe_NegotiatesEveryFeature_ReadsTheBounds_AndPostsBuffers()
    {
        using var rig = new WatchdogRig(_transport);

        WatchdogDriver driver = rig.Probe();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(driver.Features, Is.EqualTo(WatchdogFeatures.All & ~WatchdogFeatures.VcpuStall), "every bit offered (VCPU_STALL is offered only with a vCPU count)");
            Assert.That(driver.MinTimeout, Is.EqualTo(TimeSpan.FromSeconds(2)));
            Assert.That(driver.MaxTimeout, Is.EqualTo(TimeSpan.FromMinutes(10)));
            Assert.That(driver.Timeout, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(driver.IsActive, Is.False);
            Assert.That(rig.Device.GetStatus().DriverBound, Is.True);
            Assert.That(rig.Spy.ChainsOn(1).Count(c => c.AtActivation), Is.EqualTo(4), "record buffers posted at probe");
            Assert.That(rig.Spy.ChainsOn(2).Count(c => c.AtActivation), Is.EqualTo(2), "notice buffers posted at probe");
            Assert.That(rig.Device.GetStatus().Armed, Is.False);
        }
    }

    [Test]
    public void StartPingExpire_OnTheVirtualClock()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe();

        WatchdogResult started = rig.Run(() =>
        {
            driver.SetTimeout(TimeSpan.FromSeconds(5));
            return driver.Start();
        });
        rig.Advance(TimeSpan.FromSeconds(4));
        WatchdogResult pinged = rig.Run(driver.Ping);
        TimeSpan? left = rig.Run(driver.GetTimeLeft);
        rig.Advance(TimeSpan.FromSeconds(4));
        bool expiredEarly = rig.EventsOf<WatchdogExpiredEvent>().Count > 0;
        rig.Advance(TimeSpan.FromSeconds(1));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(started, Is.EqualTo(WatchdogResult.Ok));
            Assert.That(pinged, Is.EqualTo(WatchdogResult.Ok));
            Assert.That(left, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(expiredEarly, Is.False);
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>().Single().VmRunTime, Is.EqualTo(TimeSpan.FromSeconds(9)));
            Assert.That(rig.Device.GetStatus().Expired, Is.True);
        }
    }

    [Test]
    public void Pretimeout_NoticeReachesTheGovernorBeforeTheBite()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe();
        var governed = new List<PretimeoutNotice>();
        rig.Run(() =>
        {
            driver.PretimeoutGovernor = governed.Add;
            driver.SetTimeout(TimeSpan.FromSeconds(10));
            driver.SetPretimeout(TimeSpan.FromSeconds(3));
            return driver.Start();
        });

        rig.Advance(TimeSpan.FromSeconds(6));
        int beforePoint = governed.Count;
        rig.Advance(TimeSpan.FromSeconds(1));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(beforePoint, Is.Zero);
            Assert.That(governed, Is.EqualTo(new[] { new PretimeoutNotice(TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(3)) }));
            Assert.That(rig.EventsOf<WatchdogPretimeoutEvent>(), Has.Count.EqualTo(1));
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>(), Is.Empty);
            Assert.That(rig.Spy.ChainsOn(2).Count(), Is.EqualTo(3), "the used notice buffer was posted again");
        }
    }

    [Test]
    public void Panic_RichQueueNeverSetUp_ReportedThroughTheMinimalPath()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.All & ~WatchdogFeatures.Events });

        PanicReportPath path = rig.Run(() => driver.Panic(new PanicReport { Message = "Kernel panic - not syncing" }));

        GuestPanickedEvent panic = rig.EventsOf<GuestPanickedEvent>().Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(path, Is.EqualTo(PanicReportPath.ConfigField));
            Assert.That(panic.Source, Is.EqualTo(WatchdogEventSource.ConfigField));
            Assert.That(rig.Spy.ChainsOn(1), Is.Empty, "eventq never used");
            Assert.That(rig.Device.GetStatus().NegotiatedFeatures & WatchdogFeatures.Events, Is.EqualTo(WatchdogFeatures.None));
        }
    }

    [Test]
    public void Panic_MinimalPath_BeforeAnyDriverOrNegotiation()
    {
        using var rig = new WatchdogRig(_transport);

        bool written = rig.Run(() => WatchdogDriver.ReportMinimal(rig.VirtioDevice, WatchdogPanicEvent.Panicked));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(written, Is.True);
            Assert.That(rig.EventsOf<GuestPanickedEvent>().Single().Source, Is.EqualTo(WatchdogEventSource.ConfigField));
            Assert.That(rig.Device.GetStatus().DriverBound, Is.False);
        }
    }

    [Test]
    public void Panic_RichRecord_MaximumMessageAndLogTail_ArriveWhole()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe();
        string message = new('m', 1024);
        string logTail = string.Concat(Enumerable.Range(0, 1024).Select(i => $"line {i:D6} ...\n"))[..16384];

        PanicReportPath path = rig.Run(() => driver.Panic(new PanicReport
        {
            Message = message,
            LogTail = logTail,
            Codes = [0xD1, 1, 2, 3, 4],
            CodeFormat = PanicCodeFormat.WindowsBugcheck,
            VcpuId = 3,
            GuestTime = TimeSpan.FromSeconds(42),
        }));
        rig.Guest.WaitForQuiescence();

        GuestPanickedEvent panic = rig.EventsOf<GuestPanickedEvent>().Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(path, Is.EqualTo(PanicReportPath.EventRecord));
            Assert.That(panic.Source, Is.EqualTo(WatchdogEventSource.EventRecord));
            Assert.That(panic.Message, Is.EqualTo(message));
            Assert.That(panic.LogTail, Is.EqualTo(logTail));
            Assert.That(panic.Codes, Is.EqualTo(new ulong[] { 0xD1, 1, 2, 3, 4 }));
            Assert.That(panic.CodeFormat, Is.EqualTo(PanicCodeFormat.WindowsBugcheck));
            Assert.That(panic.VcpuId, Is.EqualTo(3));
            Assert.That(panic.GuestTime, Is.EqualTo(TimeSpan.FromSeconds(42)));
            Assert.That(rig.Run(() => driver.RecordStatuses.ToArray()), Is.EqualTo(new byte[] { 1 }), "ACCEPTED, seen when interrupts came back");
        }
    }

    [Test]
    public void Panic_CrashKernelLoaded_ReportedAsCrashLoaded()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe();

        PanicReportPath path = rig.Run(() =>
        {
            driver.CrashKernelLoaded = true;
            return driver.Panic(new PanicReport { Message = "crash kernel takes over" });
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(path, Is.EqualTo(PanicReportPath.EventRecord));
            Assert.That(rig.EventsOf<GuestCrashLoadedEvent>().Single().Message, Is.EqualTo("crash kernel takes over"));
            Assert.That(rig.EventsOf<GuestPanickedEvent>(), Is.Empty);
        }
    }

    [Test]
    public void Shutdown_ReportedAsAShutdownRecord()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe();

        PanicReportPath path = rig.Run(driver.Shutdown);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(path, Is.EqualTo(PanicReportPath.EventRecord));
            Assert.That(rig.EventsOf<GuestShutdownEvent>().Single().Source, Is.EqualTo(WatchdogEventSource.EventRecord));
        }
    }

    [Test]
    public void BootReason_AfterTheHostResetTheVmForAnExpiry_IsWatchdog_ThenCleared()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver first = rig.Probe();
        rig.Run(first.Start);
        rig.Advance(TimeSpan.FromSeconds(20));
        Assert.That(rig.EventsOf<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));

        rig.ResetVm(WatchdogBootReason.Watchdog);
        WatchdogDriver second = rig.Probe();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(first.BootReason, Is.EqualTo(WatchdogBootReason.None));
            Assert.That(second.BootReason, Is.EqualTo(WatchdogBootReason.Watchdog));
            Assert.That(second.BootStatusCardReset, Is.True);
            Assert.That(rig.Device.GetStatus().BootReason, Is.EqualTo(WatchdogBootReason.None), "the driver acknowledged it");
            Assert.That(second.IsHardwareRunning, Is.False, "a VM reset stops the watchdog");
        }
    }

    [Test]
    public void MagicClose_StopsTheWatchdog()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe();

        WatchdogResult released = rig.Run(() =>
        {
            driver.Open();
            driver.Write(Encoding.ASCII.GetBytes("V"));
            return driver.Release();
        });
        rig.Advance(TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(5));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(released, Is.EqualTo(WatchdogResult.Ok));
            Assert.That(rig.Device.GetStatus().Armed, Is.False);
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>(), Is.Empty);
        }
    }

    [Test]
    public void CloseWithoutMagic_WatchdogDidNotStop_AndBites()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe();

        WatchdogResult released = rig.Run(() =>
        {
            driver.Open();
            driver.Write(Encoding.ASCII.GetBytes("x"));
            return driver.Release();
        });
        rig.Advance(TimeSpan.FromSeconds(20));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(released, Is.EqualTo(WatchdogResult.Busy));
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));
        }
    }

    [Test]
    public void Nowayout_MagicCloseAndStopRefused_WatchdogBites()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { Nowayout = true });

        (WatchdogResult stop, WatchdogResult release) = rig.Run(() =>
        {
            driver.Open();
            driver.Write(Encoding.ASCII.GetBytes("V"));
            return (driver.Stop(), driver.Release());
        });
        rig.Advance(TimeSpan.FromSeconds(20));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stop, Is.EqualTo(WatchdogResult.Busy));
            Assert.That(release, Is.EqualTo(WatchdogResult.Busy));
            Assert.That(rig.Device.GetStatus().Nowayout, Is.True);
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>(), Has.Count.EqualTo(1));
        }
    }

    [Test]
    public void StopWithoutControl_DeviceCannotStop_TheCoreWorkerKeepsItAlive()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.Events | WatchdogFeatures.PanicConfig });

        (WatchdogResult start, WatchdogResult stop, WatchdogResult timeout) = rig.Run(() => (driver.Start(), driver.Stop(), driver.SetTimeout(TimeSpan.FromSeconds(5))));
        rig.Advance(TimeSpan.FromSeconds(200), TimeSpan.FromSeconds(2));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(start, Is.EqualTo(WatchdogResult.Ok));
            Assert.That(stop, Is.EqualTo(WatchdogResult.Ok));
            Assert.That(timeout, Is.EqualTo(WatchdogResult.NotSupported));
            Assert.That(driver.IsHardwareRunning, Is.True);
            Assert.That(driver.WorkerKeepalives, Is.EqualTo(20), "every 10 s (half the 20 s timeout) for 200 s");
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>(), Is.Empty);
            Assert.That(rig.Device.GetStatus().Armed, Is.True);
        }
    }

    [Test]
    public void PackedRings_ControlPretimeoutAndPanic_AllWork()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { RingFeatures = VirtioPanic.Virtio.Device.VirtioFeatures.RingPacked | VirtioPanic.Virtio.Device.VirtioFeatures.EventIndex });
        rig.Run(() => (driver.SetTimeout(TimeSpan.FromSeconds(10)), driver.SetPretimeout(TimeSpan.FromSeconds(4)), driver.Start()));

        rig.Advance(TimeSpan.FromSeconds(6));
        PanicReportPath path = rig.Run(() => driver.Panic(new PanicReport { Message = "packed" }));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.VirtioDevice.Queue(0).Format, Is.EqualTo(VirtioPanic.Virtio.Queue.VirtqueueFormat.Packed));
            Assert.That(driver.PretimeoutNotices, Has.Count.EqualTo(1));
            Assert.That(path, Is.EqualTo(PanicReportPath.EventRecord));
            Assert.That(rig.EventsOf<GuestPanickedEvent>().Single().Message, Is.EqualTo("packed"));
        }
    }

    [Test]
    public void SetTimeoutOutOfBounds_RefusedByTheDriver_DeviceUnchanged()
    {
        using var rig = new WatchdogRig(_transport);
        WatchdogDriver driver = rig.Probe();

        (WatchdogResult low, WatchdogResult high, WatchdogResult ok) = rig.Run(() =>
            (driver.SetTimeout(TimeSpan.FromSeconds(1)), driver.SetTimeout(TimeSpan.FromMinutes(11)), driver.SetTimeout(TimeSpan.FromSeconds(30))));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(low, Is.EqualTo(WatchdogResult.InvalidArgument));
            Assert.That(high, Is.EqualTo(WatchdogResult.InvalidArgument));
            Assert.That(ok, Is.EqualTo(WatchdogResult.Ok));
            Assert.That(rig.Device.GetStatus().Timeout, Is.EqualTo(TimeSpan.FromSeconds(30)));
        }
    }
}
