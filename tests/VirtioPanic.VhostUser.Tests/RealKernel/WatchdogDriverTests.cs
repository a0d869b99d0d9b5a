using VirtioPanic.Device;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

// The reference Linux driver (src/guest/linux, virtio_wdt.ko as shipped: virtio ID 35, real
// feature negotiation) in Debian's 6.1 kernel under QEMU 11 (TCG), on QEMU's generic vhost-user
// device presenting ID 35, against our WatchdogDevice served by VhostUserBackend: the baseline
// heartbeat protocol (a device that offers no CONTROL), a sysrq panic after remove and re-probe,
// and control requests with nowayout across a rebind. (These ran on QEMU 7.2's gpio stub with a
// carrier build of the driver until ID 35 could be presented; see Qemu11DriverTests and
// UmlDriverTests for the rest of the matrix.)
internal sealed class WatchdogDriverTests : RealKernelTest
{
    private const string ModuleName = "virtio_wdt";

    // A device without CONTROL (and so without PRETIMEOUT): the driver speaks baseline heartbeats.
    private const WatchdogFeatures BaselineFeatures = WatchdogFeatures.Events | WatchdogFeatures.BootReason | WatchdogFeatures.LogTail;

    // busybox watchdog pets /dev/watchdog every second. A magic close (SIGTERM: busybox writes 'V')
    // cannot stop the baseline device, so the kernel's watchdog core keeps it alive; a SIGKILL (no
    // magic close) leaves it armed with nobody petting, and it expires.
    private const string PetScript = """
        w=/sys/class/watchdog/watchdog0
        echo "VP-WDT identity $(cat $w/identity)"
        echo "VP-WDT bootstatus $(cat $w/bootstatus)"
        echo "VP-WDT boot_reason $(cat $w/boot_reason)"
        echo "VP-WDT timeout $(cat $w/timeout)"
        watchdog -t 1 /dev/watchdog
        sleep 2
        echo "VP-WDT running $(cat $w/state) $(cat $w/timeleft)"
        kill -TERM $(pidof watchdog)
        echo "VP-WDT-MAGIC-CLOSE"
        sleep 5
        watchdog -t 1 /dev/watchdog
        sleep 2
        kill -KILL $(pidof watchdog)
        echo "VP-WDT-KILLED"
        sleep 5
        dmesg | grep virtio_wdt
        """;

    // With CONTROL: busybox's open is START, -T is SET_TIMEOUT, a magic close is STOP. A timeout
    // above max_timeout_ms is refused (the kernel knows the device's bounds).
    // With nowayout set through sysfs the driver sends SET_NOWAYOUT at START; unbinding the driver
    // then resets the device, which keeps the watchdog running (§6.8), and the re-bound driver
    // finds it armed (GET_STATUS) and lets the core keep it alive (WDT-DRV-16), until a busybox
    // killed without a magic close leaves it to expire.
    private const string ControlScript = """
        w=/sys/class/watchdog/watchdog0
        d=$(basename $(readlink $w/device))
        echo "VP-WDT timeout $(cat $w/timeout)"
        watchdog -F -T 2 -t 1 /dev/watchdog &
        sleep 2
        echo "VP-WDT running $(cat $w/state) $(cat $w/timeout) $(cat $w/timeleft)"
        kill -TERM $!
        sleep 1
        echo "VP-WDT stopped $(cat $w/state)"
        echo 1 > $w/nowayout
        watchdog -F -T 100 -t 1 /dev/watchdog &
        sleep 2
        echo "VP-WDT timeout-after-invalid $(cat $w/timeout)"
        echo $d > /sys/bus/virtio/drivers/virtio_wdt/unbind
        echo $d > /sys/bus/virtio/drivers/virtio_wdt/bind
        kill -KILL $!
        echo "VP-WDT-REBOUND"
        sleep 4
        echo "VP-WDT rebound-timeout $(cat $w/timeout) nowayout $(cat $w/nowayout)"
        watchdog -F -T 2 -t 1 /dev/watchdog &
        sleep 1
        kill -KILL $!
        echo "VP-WDT-KILLED"
        sleep 4
        """;

    private static readonly Dictionary<WatchdogEventKind, PolicyAction> s_policy = new()
    {
        [WatchdogEventKind.Expired] = PolicyAction.Reset,
        [WatchdogEventKind.GuestPanicked] = PolicyAction.Dump,
        [WatchdogEventKind.GuestCrashLoaded] = PolicyAction.None,   // let the crash kernel work
        [WatchdogEventKind.GuestShutdown] = PolicyAction.None,
    };

    private static string DriverSource => Path.Combine(TestPaths.RepositoryRoot(), "src", "guest", "linux");

    [Test]
    public void NormalBuild_Id35_CompilesWarningsClean()
    {
        // The build CI ships: real negotiation only, virtio ID 35, -Werror (the driver's Kbuild).
        string ko = GuestModuleBuilder.BuildWithOwnKbuild(Kernel, DriverSource, ModuleName);
        ProcessResult info = BoundedProcess.Run("modinfo", ["-F", "alias", ko], TimeSpan.FromSeconds(30));

        Assert.That(info.StandardOutput.Trim(), Is.EqualTo("virtio:d00000023v*"), info.ToString());
    }

    [Test]
    public async Task Baseline_BusyboxWatchdog_MagicCloseKeptAliveByKernel_KillWithoutCloseExpires_ShutdownReported()
    {
        using WatchdogDevice device = NewDevice(TimeSpan.FromSeconds(3), features: BaselineFeatures);
        device.SetBootReason(WatchdogBootReason.Watchdog);
        string initramfs = BuildInitramfs("pet", PetScript);
        await using var recorder = new PolicyRecorder(device, s_policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"), options: null);

        QemuRun run = await BootAsync(Options("pet", initramfs, host));
        GuestShutdownEvent? shutdown = await recorder.WaitForAsync<GuestShutdownEvent>(TimeSpan.FromSeconds(5));

        IReadOnlyList<WatchdogArmedEvent> armed = recorder.Of<WatchdogArmedEvent>();
        IReadOnlyList<WatchdogExpiredEvent> expired = recorder.Of<WatchdogExpiredEvent>();
        string? running = Line(run, "VP-WDT running ");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted && !run.TimedOut, Is.True, run.ToString());
            Assert.That(run.SerialLog, Does.Not.Contain("VP-INSMOD-FAILED"), run.ToString());
            // The gpio stub acked no device-type bit; the back end added the implied ones.
            Assert.That(host.Backend.Statistics.NegotiatedFeatures & 0xffffff, Is.EqualTo((ulong)BaselineFeatures), "negotiated: no CONTROL offered");
            Assert.That(Id35Guest.GuestFeatures(run), Is.EqualTo((ulong)BaselineFeatures), "the guest's view");
            Assert.That(Line(run, "VP-WDT identity "), Is.EqualTo("virtio watchdog"));
            Assert.That(Line(run, "VP-WDT timeout "), Is.EqualTo("3"), "baseline: the device's default_timeout_ms, in seconds");
            // Boot reason WATCHDOG (§6.7) becomes WDIOF_CARDRESET (0x20) in the boot status.
            Assert.That(Line(run, "VP-WDT bootstatus "), Is.EqualTo("32"));
            Assert.That(Line(run, "VP-WDT boot_reason "), Is.EqualTo("watchdog"));
            Assert.That(running, Does.StartWith("active "), "state and time left while busybox pets it");
            Assert.That(running is null ? -1 : int.Parse(running.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture), Is.InRange(1, 3), "baseline time left");

            // One heartbeat armed the device; it was kept alive through the magic close (by the
            // kernel) and the second busybox, and expired once after the SIGKILL.
            Assert.That(armed, Has.Count.EqualTo(1), recorder.ToString());
            Assert.That(armed.Count > 0 && armed[0].ByHeartbeat, Is.True, "armed by a baseline heartbeat");
            Assert.That(expired, Has.Count.EqualTo(1), recorder.ToString());
            if (armed.Count == 1 && expired.Count == 1)
            {
                // Petting 2 s + 5 s after the magic close + 2 s + the 3 s timeout: about 12 s of run
                // time. Had nobody pinged after the magic close it would have expired after about 5 s.
                Assert.That(expired[0].VmRunTime - armed[0].VmRunTime, Is.GreaterThan(TimeSpan.FromSeconds(10)), recorder.ToString());
                Assert.That(expired[0].Timeout, Is.EqualTo(TimeSpan.FromSeconds(3)));
            }

            Assert.That(run.SerialLog, Does.Contain("watchdog did not stop!"), "the watchdog core saw the close without the magic character");
            Assert.That(recorder.Actions.Where(a => a.Event is WatchdogExpiredEvent).Select(a => a.Action), Is.EqualTo(new[] { PolicyAction.Reset }), "the configured action for the expiry is recorded");

            // poweroff -f runs the reboot notifier: a SHUTDOWN record (codes[0] = SYS_POWER_OFF).
            Assert.That(shutdown, Is.Not.Null, recorder.ToString());
            Assert.That(shutdown?.Source, Is.EqualTo(WatchdogEventSource.EventRecord));
            Assert.That(shutdown?.Message, Is.EqualTo("power off"));
            Assert.That(shutdown?.Codes, Is.EqualTo(new ulong[] { 3 }));
            Assert.That(recorder.Of<GuestProtocolErrorEvent>(), Is.Empty, "no protocol error");
            Assert.That(recorder.Of<GuestPanickedEvent>(), Is.Empty);
        }
    }

    [Test]
    public async Task SysrqCrash_AfterRemoveAndReprobe_PanicRecordCarriesTheKernelsPanicStringAndLogTail_ActionRecorded()
    {
        using WatchdogDevice device = NewDevice(TimeSpan.FromSeconds(20));
        // The driver is removed (device reset, queues deleted) and probed again first, so the
        // panic goes through records posted by the second probe.
        string initramfs = BuildInitramfs("panic", """
            rmmod virtio_wdt && echo "VP-WDT-REMOVED"
            insmod /lib/modules/*-virtio_wdt.ko && echo "VP-WDT-REPROBED $(cat /sys/class/watchdog/watchdog0/identity)"
            echo "VP-WDT-PANIC"
            echo c > /proc/sysrq-trigger
            """);
        await using var recorder = new PolicyRecorder(device, s_policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"), options: null);

        // panic=-1 reboots at once and -no-reboot turns that into QEMU's exit.
        QemuRun run = await BootAsync(Options("panic", initramfs, host));
        GuestPanickedEvent? panic = await recorder.WaitForAsync<GuestPanickedEvent>(TimeSpan.FromSeconds(5));
        TestContext.Out.WriteLine($"panic event: {(panic is null ? "none" : PolicyRecorder.Describe(panic))}");
        TestContext.Out.WriteLine($"panic log tail (end):\n{Tail(panic?.LogTail, 1500)}");
        TestContext.Out.WriteLine($"serial console (end):\n{Tail(run.SerialLog, 2500)}");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.SerialLog, Does.Contain("VP-WDT-REMOVED"), run.ToString());
            Assert.That(Line(run, "VP-WDT-REPROBED"), Is.EqualTo("virtio watchdog"), run.ToString());
            Assert.That(recorder.Of<DriverResetEvent>(), Is.Not.Empty, "the remove reset the device");
            Assert.That(host.Backend.Statistics.DeviceActivations, Is.EqualTo(2), "activated by each probe");
            Assert.That(run.SerialLog, Does.Contain("VP-WDT-PANIC"), run.ToString());
            Assert.That(run.SerialLog, Does.Contain("Kernel panic - not syncing: sysrq triggered crash"), run.ToString());
            Assert.That(run.TimedOut, Is.False, run.ToString());
            Assert.That(panic, Is.Not.Null, recorder.ToString());
            // Through the record, acknowledged before the guest reset (not found at the reset).
            Assert.That(panic?.Source, Is.EqualTo(WatchdogEventSource.EventRecord));
            Assert.That(panic?.Message, Is.EqualTo("sysrq triggered crash"), "the panic notifier's message, trailing newline removed");
            Assert.That(panic?.LogTail, Does.Contain("sysrq: Trigger a crash"));
            Assert.That(panic?.LogTail, Does.Contain("Kernel panic - not syncing: sysrq triggered crash"));
            Assert.That(panic?.LogTail?.Length, Is.InRange(1, 16384));
            Assert.That(panic?.VcpuId, Is.EqualTo(0u), "the single vCPU");
            Assert.That(panic?.GuestTime, Is.GreaterThan(TimeSpan.Zero), "boot-clock timestamp");
            Assert.That(panic?.RecordSequence, Is.Not.Null);
            Assert.That(recorder.Of<GuestPanickedEvent>(), Has.Count.EqualTo(1));
            Assert.That(recorder.Of<GuestCrashLoadedEvent>(), Is.Empty, "no crash kernel was loaded");
            Assert.That(recorder.Of<GuestShutdownEvent>(), Is.Empty, "a panic is not a shutdown");
            Assert.That(recorder.Actions.Where(a => a.Event is GuestPanickedEvent).Select(a => a.Action), Is.EqualTo(new[] { PolicyAction.Dump }), "the configured action for the panic is recorded");
        }
    }

    [Test]
    public async Task Control_StartStopSetTimeoutTimeLeft_NowayoutSurvivesRebind_ThroughControlRequests()
    {
        const WatchdogFeatures Features = BaselineFeatures | WatchdogFeatures.Control;
        using WatchdogDevice device = NewDevice(TimeSpan.FromSeconds(10), maxTimeout: TimeSpan.FromSeconds(60), features: Features);
        string initramfs = BuildInitramfs("control", ControlScript);
        await using var recorder = new PolicyRecorder(device, s_policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"), options: null);

        Task<QemuRun> boot = BootAsync(Options("control", initramfs, host));
        WatchdogExpiredEvent? expired = await recorder.WaitForAsync<WatchdogExpiredEvent>(TimeSpan.FromSeconds(90));
        WatchdogDeviceStatus atExpiry = device.GetStatus();
        QemuRun run = await boot;
        GuestShutdownEvent? shutdown = await recorder.WaitForAsync<GuestShutdownEvent>(TimeSpan.FromSeconds(5));

        IReadOnlyList<WatchdogArmedEvent> armed = recorder.Of<WatchdogArmedEvent>();
        IReadOnlyList<WatchdogStoppedEvent> stopped = recorder.Of<WatchdogStoppedEvent>();
        DriverResetEvent? keptRunning = recorder.Of<DriverResetEvent>().FirstOrDefault(e => e.WatchdogKeptRunning);
        string[] running = (Line(run, "VP-WDT running ") ?? string.Empty).Split(' ');
        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted && !run.TimedOut, Is.True, run.ToString());
            Assert.That(host.Backend.Statistics.NegotiatedFeatures & 0xffffff, Is.EqualTo((ulong)Features));
            Assert.That(Line(run, "VP-WDT timeout "), Is.EqualTo("10"), "default_timeout_ms in seconds");
            Assert.That(running, Has.Length.EqualTo(3), run.ToString());
            Assert.That(running[0], Is.EqualTo("active"));
            Assert.That(running.ElementAtOrDefault(1), Is.EqualTo("2"), "SET_TIMEOUT 2 s");
            Assert.That(running.ElementAtOrDefault(2), Is.AnyOf("0", "1", "2"), "time left from GET_STATUS");
            Assert.That(Line(run, "VP-WDT stopped "), Is.EqualTo("inactive"), "the magic close stopped it");
            Assert.That(run.SerialLog, Does.Contain("WDIOC_SETTIMEOUT: Invalid argument"), "the device refused a timeout above its maximum");
            Assert.That(Line(run, "VP-WDT timeout-after-invalid "), Is.EqualTo("2"));

            // START with the default, STOP at the magic close, START with 2 s; the unbind's reset
            // kept it running (NOWAYOUT), nothing re-armed it, and it expired only after the last kill.
            Assert.That(armed.Select(a => (a.ByHeartbeat, a.Timeout)), Is.EqualTo(new[] { (false, TimeSpan.FromSeconds(10)), (false, TimeSpan.FromSeconds(2)) }), recorder.ToString());
            Assert.That(stopped.Select(e => e.Reason), Is.EqualTo(new[] { WatchdogStopReason.DriverStop }), recorder.ToString());
            Assert.That(keptRunning, Is.Not.Null, "the unbind reset the device and the NOWAYOUT watchdog kept running\n" + recorder);
            Assert.That(Line(run, "VP-WDT rebound-timeout "), Is.EqualTo("2 nowayout 1"), "the re-bound driver took timeout and nowayout from GET_STATUS");
            Assert.That(expired, Is.Not.Null, recorder.ToString());
            Assert.That(expired?.Timeout, Is.EqualTo(TimeSpan.FromSeconds(2)));
            if (keptRunning is not null && expired is not null)
            {
                // 4 s with only the kernel pinging, then 1 s of busybox and the 2 s timeout.
                Assert.That(expired.VmRunTime - keptRunning.VmRunTime, Is.GreaterThan(TimeSpan.FromSeconds(5)), recorder.ToString());
            }

            Assert.That(run.SerialLog, Does.Contain("watchdog did not stop!"), "the core saw the last close without the magic character");
            Assert.That(atExpiry.Nowayout, Is.True, "the driver sent SET_NOWAYOUT when it started the watchdog with nowayout in force");
            Assert.That(recorder.Actions.Where(a => a.Event is WatchdogExpiredEvent).Select(a => a.Action), Is.EqualTo(new[] { PolicyAction.Reset }));
            Assert.That(shutdown?.Message, Is.EqualTo("power off"), recorder.ToString());
            Assert.That(recorder.Of<GuestProtocolErrorEvent>(), Is.Empty, "no protocol error");
        }
    }

    private static WatchdogDevice NewDevice(TimeSpan defaultTimeout, TimeSpan? maxTimeout = null, WatchdogFeatures features = WatchdogFeatures.All) =>
        Id35Guest.NewDevice("wdt-id35", defaultTimeout, maxTimeout ?? TimeSpan.FromMinutes(10), features);

    private QemuMachineOptions Options(string action, string initramfs, VhostUserBackendHost host, params string[] kernelArguments) => new()
    {
        Action = action,
        Initramfs = initramfs,
        QemuBinary = Kernel.Qemu11,
        Machine = "q35",
        VhostUserDevices = [(Id35Guest.PciDevice, host.SocketPath)],
        KernelArguments = kernelArguments,
        Timeout = TimeSpan.FromSeconds(150),
    };

    private static string? Line(QemuRun run, string marker) => Id35Guest.Line(run, marker);

    private static string Tail(string? text, int length) => Id35Guest.Tail(text, length);

    private string BuildInitramfs(string action, string script, Action<InitramfsBuilder>? extra = null)
    {
        string path = WorkPath($"initramfs-{action}.cpio.gz");
        InitramfsBuilder builder = NewInitramfs()
            .AddModule("virtio_pci")
            .AddModule("watchdog")
            .AddKernelObject(Id35Guest.Driver(Kernel))
            .AddAction(action, script);
        extra?.Invoke(builder);
        builder.Build(path);
        return path;
    }
}
