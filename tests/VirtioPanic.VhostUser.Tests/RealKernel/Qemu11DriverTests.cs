using VirtioPanic.Device;
using static VirtioPanic.VhostUser.Tests.RealKernel.Id35Guest;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

// The reference Linux driver (src/guest/linux, the build CI ships: virtio ID 35, real negotiation)
// in Debian's 6.1 kernel under QEMU 11 (TCG, unpacked from trixie-backports by
// .ci/prerequisites-qemu11), on QEMU's generic vhost-user device presenting ID 35, against our
// WatchdogDevice served by VhostUserBackend. QEMU forwards every driver configuration write as
// one whole-image SET_CONFIG (spec §4.1), so every boot_reason clear and panic_events report here
// goes through WDT-DEV-38.
internal sealed class Qemu11DriverTests : RealKernelTest
{
    // Bounds through sysfs (the kernel's view of min/max_timeout_ms), then the ioctls: a timeout
    // inside the bounds, two outside (refused by the watchdog core from the real bounds), time
    // left while petting, and the magic close that STOPs. Then busybox pets and is killed without
    // a magic close: the watchdog expires.
    private const string PetScript = """
        w=/sys/class/watchdog/watchdog0
        dmesg | grep virtio_wdt
        echo "VP-WDT identity $(cat $w/identity)"
        echo "VP-WDT bootstatus $(cat $w/bootstatus)"
        echo "VP-WDT boot_reason $(cat $w/boot_reason)"
        echo "VP-WDT bounds $(cat $w/min_timeout) $(cat $w/timeout) $(cat $w/max_timeout)"
        vp_wdctl /dev/watchdog0 info boot t=3 t=0 t=31 timeout pet=2 left close
        echo "VP-WDT stopped $(cat $w/state)"
        watchdog -F -T 2 -t 1 /dev/watchdog0 &
        sleep 2
        echo "VP-WDT running $(cat $w/state) $(cat $w/timeout)"
        kill -KILL $!
        echo "VP-WDT-KILLED"
        sleep 5
        """;

    [Test]
    public async Task Pci_NegotiatesEveryFeature_BoundsAndTimeLeft_PetStopThenExpiry_ResetBootReadsWatchdogAndClearsIt()
    {
        using WatchdogDevice device = NewDevice("wdt-q11", TimeSpan.FromSeconds(10), maxTimeout: TimeSpan.FromSeconds(30));
        string initramfs = BuildInitramfs("pet", PetScript);
        string boot = BuildInitramfs("boot", """
            w=/sys/class/watchdog/watchdog0
            echo "VP-WDT bootstatus $(cat $w/bootstatus)"
            echo "VP-WDT boot_reason $(cat $w/boot_reason)"
            vp_wdctl /dev/watchdog0 boot close
            """);
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));

        QemuRun run = await BootAsync(Options("pet", initramfs, host));
        GuestShutdownEvent? shutdown = await recorder.WaitForAsync<GuestShutdownEvent>(TimeSpan.FromSeconds(5));
        // The policy service's Reset for the expiry set boot_reason WATCHDOG for the next boot.
        WatchdogBootReason beforeReset = device.GetStatus().BootReason;
        ulong negotiated = host.Backend.Statistics.NegotiatedFeatures;
        IReadOnlyList<WatchdogArmedEvent> armed = recorder.Of<WatchdogArmedEvent>();
        IReadOnlyList<WatchdogStoppedEvent> stopped = recorder.Of<WatchdogStoppedEvent>();
        IReadOnlyList<WatchdogExpiredEvent> expired = recorder.Of<WatchdogExpiredEvent>();

        // The reset VM boots again (a new QEMU on the same device and back end).
        QemuRun second = await BootAsync(Options("boot", boot, host));
        WatchdogBootReason afterSecond = device.GetStatus().BootReason;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted && !run.TimedOut, Is.True, run.ToString());
            Assert.That(run.SerialLog, Does.Not.Contain("VP-INSMOD-FAILED"), run.ToString());
            // Every device feature, negotiated for real: the guest's view and the host's.
            Assert.That(GuestFeatures(run), Is.EqualTo((ulong)Offered), run.ToString());
            Assert.That(negotiated & 0xffffff, Is.EqualTo((ulong)Offered));
            Assert.That(negotiated & (1UL << 32), Is.Not.Zero, "VIRTIO_F_VERSION_1");
            Assert.That(Line(run, "VP-WDT identity "), Is.EqualTo("virtio watchdog"));
            Assert.That(Line(run, "VP-WDT bootstatus "), Is.EqualTo("0"));
            Assert.That(Line(run, "VP-WDT boot_reason "), Is.EqualTo("none"));
            Assert.That(Line(run, "VP-WDT bounds "), Is.EqualTo("1 10 30"), "min_timeout_ms, default_timeout_ms, max_timeout_ms in seconds");
            // WDIOF_KEEPALIVEPING | MAGICCLOSE | SETTIMEOUT | PRETIMEOUT | CARDRESET.
            Assert.That(Wdctl(run, "info"), Is.EqualTo("0x83a0 virtio watchdog"), run.ToString());
            Assert.That(Wdctl(run, "t=3"), Is.EqualTo("3"));
            Assert.That(Wdctl(run, "t=0"), Is.EqualTo("error Invalid argument"), "below min_timeout");
            Assert.That(Wdctl(run, "t=31"), Is.EqualTo("error Invalid argument"), "above max_timeout");
            Assert.That(Wdctl(run, "timeout"), Is.EqualTo("3"));
            Assert.That(Wdctl(run, "left"), Is.AnyOf("1", "2", "3"), "time left from GET_STATUS while petting");
            Assert.That(Wdctl(run, "close"), Is.EqualTo("0"));
            Assert.That(Line(run, "VP-WDT stopped "), Is.EqualTo("inactive"), "the magic close stopped it");
            Assert.That(Line(run, "VP-WDT running "), Is.EqualTo("active 2"));

            // START (10 s), SET_TIMEOUT 3 s, STOP; START (3 s, the core's timeout), SET_TIMEOUT 2 s; expiry after the kill.
            Assert.That(armed, Has.Count.EqualTo(2), recorder.ToString());
            Assert.That(stopped.Select(e => e.Reason), Is.EqualTo(new[] { WatchdogStopReason.DriverStop }), recorder.ToString());
            Assert.That(expired, Has.Count.EqualTo(1), recorder.ToString());
            Assert.That(expired.Select(e => e.Timeout), Is.EqualTo(new[] { TimeSpan.FromSeconds(2) }));
            Assert.That(recorder.Actions.Where(a => a.Event is WatchdogExpiredEvent).Select(a => a.Action), Is.EqualTo(new[] { PolicyAction.Reset }));
            Assert.That(shutdown?.Source, Is.EqualTo(WatchdogEventSource.EventRecord), recorder.ToString());
            Assert.That(shutdown?.Message, Is.EqualTo("power off"));
            Assert.That(beforeReset, Is.EqualTo(WatchdogBootReason.Watchdog), "the policy service's reset for the expiry sets boot_reason for the next boot");

            // The next boot: WDIOF_CARDRESET (0x20), boot_reason "watchdog", then cleared by the
            // driver's write of 0 (one whole-image SET_CONFIG through QEMU).
            Assert.That(second.ActionCompleted && !second.TimedOut, Is.True, second.ToString());
            Assert.That(Line(second, "VP-WDT bootstatus "), Is.EqualTo("32"), second.ToString());
            Assert.That(Line(second, "VP-WDT boot_reason "), Is.EqualTo("watchdog"));
            Assert.That(Wdctl(second, "boot"), Is.EqualTo("32"));
            Assert.That(afterSecond, Is.EqualTo(WatchdogBootReason.None), "the driver cleared boot_reason");
            Assert.That(recorder.Of<GuestProtocolErrorEvent>(), Is.Empty, "no whole-image write was taken for a protocol error\n" + recorder);
            Assert.That(recorder.Of<GuestPanickedEvent>(), Is.Empty, "no panic invented from a whole-image write");
            Assert.That(recorder.Of<GuestShutdownEvent>().Where(e => e.Source == WatchdogEventSource.ConfigField), Is.Empty, "no shutdown invented from a whole-image write");
        }
    }

    [Test]
    public async Task Pci_SysrqCrash_PanicRecordCarriesTheKernelsMessageAndLogTail()
    {
        using WatchdogDevice device = NewDevice("wdt-q11", TimeSpan.FromSeconds(20));
        string initramfs = BuildInitramfs("panic", """
            echo "VP-WDT-PANIC"
            echo c > /proc/sysrq-trigger
            """);
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));

        QemuRun run = await BootAsync(Options("panic", initramfs, host));
        GuestPanickedEvent? panic = await recorder.WaitForAsync<GuestPanickedEvent>(TimeSpan.FromSeconds(5));
        TestContext.Out.WriteLine($"panic event: {(panic is null ? "none" : PolicyRecorder.Describe(panic))}");

        AssertSysrqPanic(run, recorder, panic, WatchdogEventSource.EventRecord);
        Assert.That(panic?.LogTail, Does.Contain("sysrq: Trigger a crash"));
    }

    [Test]
    public async Task Pci_EventsRefusedByTheDriver_SysrqCrashArrivesThroughPanicEventsAlone()
    {
        using WatchdogDevice device = NewDevice("wdt-q11", TimeSpan.FromSeconds(20));
        string initramfs = BuildInitramfs("panic", """
            dmesg | grep virtio_wdt
            echo "VP-WDT-PANIC"
            echo c > /proc/sysrq-trigger
            """, parameters: "events=0");
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));

        QemuRun run = await BootAsync(Options("panic", initramfs, host));
        GuestPanickedEvent? panic = await recorder.WaitForAsync<GuestPanickedEvent>(TimeSpan.FromSeconds(5));

        const WatchdogFeatures Expected = Offered & ~(WatchdogFeatures.Events | WatchdogFeatures.LogTail);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(GuestFeatures(run), Is.EqualTo((ulong)Expected), "EVENTS refused, LOG_TAIL with it (WDT-DRV-1)\n" + run);
            Assert.That(host.Backend.Statistics.NegotiatedFeatures & 0xffffff, Is.EqualTo((ulong)Expected));
            Assert.That(run.SerialLog, Does.Contain("panic reported through panic_events"), run.ToString());
            Assert.That(panic, Is.Not.Null, recorder.ToString());
            Assert.That(panic?.Source, Is.EqualTo(WatchdogEventSource.ConfigField), "the one-register path");
            Assert.That(recorder.Of<GuestPanickedEvent>(), Has.Count.EqualTo(1), "one write, one report: the whole image invented none\n" + recorder);
            Assert.That(recorder.Of<GuestProtocolErrorEvent>(), Is.Empty, recorder.ToString());
            Assert.That(recorder.Actions.Where(a => a.Event is GuestPanickedEvent).Select(a => a.Action), Is.EqualTo(new[] { PolicyAction.Dump }));
        }
    }

    [Test]
    public async Task Pci_Pretimeout_NoopGovernorLogsTheNotice_PanicGovernorPanicsTheGuest()
    {
        using WatchdogDevice device = NewDevice("wdt-q11", TimeSpan.FromSeconds(10));
        // noop: the notice is logged, the watchdog is stopped before it expires. panic: the
        // governor panics the guest, and our panic notifier reports that panic.
        string initramfs = BuildInitramfs(
            "pretimeout",
            """
            w=/sys/class/watchdog/watchdog0
            echo "VP-WDT governors $(cat $w/pretimeout_available_governors | tr '\n' ' ')"
            echo noop > $w/pretimeout_governor
            vp_wdctl /dev/watchdog0 t=4 p=2 pretimeout sleep=3 close
            dmesg | grep "pretimeout event" && echo "VP-WDT-NOOP-LOGGED"
            echo panic > $w/pretimeout_governor
            echo "VP-WDT governor $(cat $w/pretimeout_governor)"
            vp_wdctl /dev/watchdog0 t=4 p=2 sleep=5 close
            """,
            extra: b => b.AddModule("pretimeout_noop").AddModule("pretimeout_panic"));
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));

        QemuRun run = await BootAsync(Options("pretimeout", initramfs, host));
        GuestPanickedEvent? panic = await recorder.WaitForAsync<GuestPanickedEvent>(TimeSpan.FromSeconds(5));

        IReadOnlyList<WatchdogPretimeoutEvent> notices = recorder.Of<WatchdogPretimeoutEvent>();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(Line(run, "VP-WDT governors "), Does.Contain("noop").And.Contain("panic"), run.ToString());
            Assert.That(Wdctl(run, "p=2"), Is.EqualTo("2"), run.ToString());
            Assert.That(Wdctl(run, "pretimeout"), Is.EqualTo("2"));
            Assert.That(run.SerialLog, Does.Contain("VP-WDT-NOOP-LOGGED"), "noop governor: \"watchdog0: pretimeout event\"\n" + run);
            Assert.That(Line(run, "VP-WDT governor "), Is.EqualTo("panic"));
            Assert.That(notices, Has.Count.EqualTo(2), "one notice per countdown\n" + recorder);
            Assert.That(notices.Select(n => n.Pretimeout), Is.All.EqualTo(TimeSpan.FromSeconds(2)));
            Assert.That(run.SerialLog, Does.Contain("Kernel panic - not syncing: watchdog pretimeout event"), run.ToString());
            Assert.That(panic?.Source, Is.EqualTo(WatchdogEventSource.EventRecord), recorder.ToString());
            Assert.That(panic?.Message, Is.EqualTo("watchdog pretimeout event"));
            Assert.That(recorder.Of<WatchdogExpiredEvent>(), Is.Empty, "the noop countdown was stopped, the panic came before expiry");
            Assert.That(recorder.Of<GuestProtocolErrorEvent>(), Is.Empty, recorder.ToString());
        }
    }

    [Test]
    public async Task PciPackedRing_NegotiatesPacked_PetThenExpiry_SysrqPanicRecord()
    {
        using WatchdogDevice device = NewDevice("wdt-q11", TimeSpan.FromSeconds(10));
        string initramfs = BuildInitramfs("packed", ExpiryThenPanicScript("/dev/watchdog0"));
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"), new VhostUserBackendOptions { PackedRings = true });

        QemuRun run = await BootAsync(Options("packed", initramfs, host, device: PciDevice + ",packed=on"));
        GuestPanickedEvent? panic = await recorder.WaitForAsync<GuestPanickedEvent>(TimeSpan.FromSeconds(5));

        Assert.That(host.Backend.Statistics.NegotiatedFeatures & (1UL << 34), Is.Not.Zero, "VIRTIO_F_RING_PACKED negotiated");
        AssertExpiryThenPanic(run, recorder, panic);
    }

    [Test]
    public async Task MicrovmMmio_Binds_PetThenExpiry_SysrqPanicRecord()
    {
        using WatchdogDevice device = NewDevice("wdt-q11", TimeSpan.FromSeconds(10));
        string initramfs = BuildInitramfs("mmio", "ls /sys/bus/platform/drivers/virtio-mmio/\n" + ExpiryThenPanicScript("/dev/watchdog0"), transport: "virtio_mmio");
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));

        // microvm has no PIT/HPET reference for the TSC calibration: give the kernel the TSC rate, or
        // it stops at "Marking TSC unstable". Its ACPI tables describe the device as LNRO0005.
        QemuRun run = await BootAsync(Options("mmio", initramfs, host, device: MmioDevice, machine: "microvm,pit=on,pic=on,rtc=on", kernelArguments: ["tsc_early_khz=2000000"]));
        GuestPanickedEvent? panic = await recorder.WaitForAsync<GuestPanickedEvent>(TimeSpan.FromSeconds(5));

        Assert.That(run.SerialLog, Does.Contain("LNRO0005"), "bound through ACPI's virtio-mmio description\n" + run);
        Assert.That(GuestFeatures(run), Is.EqualTo((ulong)Offered), run.ToString());
        AssertExpiryThenPanic(run, recorder, panic);
    }

    [Test]
    public async Task Pci_SysrqCrash_WithCrashKernelLoaded_ReportsCrashLoaded_AndTheCrashKernelRuns()
    {
        using WatchdogDevice device = NewDevice("wdt-q11", TimeSpan.FromSeconds(20));
        string loader = GuestModuleBuilder.BuildStaticProgram(Path.Combine(GuestModuleBuilder.GuestSource("kexec_crash"), "vp_kexec_crash.c"));
        // The crash kernel gets no initramfs: it boots, finds no root file system and panics, which
        // (panic=-1, -no-reboot) ends the run; its panic message shows that it ran.
        string initramfs = BuildInitramfs(
            "crash",
            """
            /bin/vp_kexec_crash /boot/vmlinuz "console=ttyS0 panic=-1 quiet loglevel=4 reset_devices vp.crashkernel=1" || echo "VP-WDT-KEXEC-FAILED"
            echo "VP-WDT crash_loaded $(cat /sys/kernel/kexec_crash_loaded)"
            echo c > /proc/sysrq-trigger
            """,
            extra: b => b.AddFile("/bin/vp_kexec_crash", File.ReadAllBytes(loader), "0755").AddFile("/boot/vmlinuz", File.ReadAllBytes(Kernel.Vmlinuz)));
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));

        // crash_kexec_post_notifiers runs the panic notifiers (ours among them) before the crash kernel starts.
        QemuRun run = await BootAsync(Options("crash", initramfs, host, kernelArguments: ["crashkernel=160M", "crash_kexec_post_notifiers"]));
        GuestCrashLoadedEvent? crash = await recorder.WaitForAsync<GuestCrashLoadedEvent>(TimeSpan.FromSeconds(5));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.SerialLog, Does.Not.Contain("VP-WDT-KEXEC-FAILED"), run.ToString());
            Assert.That(Line(run, "VP-WDT crash_loaded "), Is.EqualTo("1"), run.ToString());
            Assert.That(crash, Is.Not.Null, recorder.ToString());
            Assert.That(crash?.Source, Is.EqualTo(WatchdogEventSource.EventRecord));
            Assert.That(crash?.Message, Is.EqualTo("sysrq triggered crash"));
            Assert.That(recorder.Of<GuestPanickedEvent>(), Is.Empty, "CRASH_LOADED instead of PANICKED (WDT-DRV-14)");
            Assert.That(recorder.Actions.Where(a => a.Event is GuestCrashLoadedEvent).Select(a => a.Action), Is.EqualTo(new[] { PolicyAction.None }));
            Assert.That(run.SerialLog, Does.Contain("VFS: Unable to mount root fs"), "the crash kernel booted\n" + run);
        }
    }

    // busybox pets for 2 s, is killed without a magic close: expiry. Then a sysrq crash.
    internal static string ExpiryThenPanicScript(string watchdog) => $"""
        dmesg | grep virtio_wdt
        watchdog -F -T 2 -t 1 {watchdog} &
        sleep 2
        kill -KILL $!
        echo "VP-WDT-KILLED"
        sleep 5
        echo "VP-WDT-PANIC"
        echo c > /proc/sysrq-trigger
        """;

    internal static void AssertExpiryThenPanic(QemuRun run, PolicyRecorder recorder, GuestPanickedEvent? panic)
    {
        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.SerialLog, Does.Contain("VP-WDT-KILLED"), run.ToString());
            Assert.That(recorder.Of<WatchdogArmedEvent>(), Has.Count.EqualTo(1), recorder.ToString());
            Assert.That(recorder.Of<WatchdogExpiredEvent>().Select(e => e.Timeout), Is.EqualTo(new[] { TimeSpan.FromSeconds(2) }), recorder.ToString());
            Assert.That(recorder.Actions.Where(a => a.Event is WatchdogExpiredEvent).Select(a => a.Action), Is.EqualTo(new[] { PolicyAction.Reset }));
        }

        AssertSysrqPanic(run, recorder, panic, WatchdogEventSource.EventRecord);
    }

    internal static void AssertSysrqPanic(QemuRun run, PolicyRecorder recorder, GuestPanickedEvent? panic, WatchdogEventSource source)
    {
        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.TimedOut, Is.False, run.ToString());
            Assert.That(run.SerialLog, Does.Contain("VP-WDT-PANIC"), run.ToString());
            Assert.That(run.SerialLog, Does.Contain("Kernel panic - not syncing: sysrq triggered crash"), run.ToString());
            Assert.That(panic, Is.Not.Null, recorder.ToString());
            Assert.That(panic?.Source, Is.EqualTo(source));
            Assert.That(panic?.Message, Is.EqualTo("sysrq triggered crash"), "the panic notifier's message");
            Assert.That(panic?.LogTail, Does.Contain("Kernel panic - not syncing: sysrq triggered crash"));
            Assert.That(panic?.VcpuId, Is.EqualTo(0u));
            Assert.That(recorder.Of<GuestPanickedEvent>(), Has.Count.EqualTo(1), recorder.ToString());
            Assert.That(recorder.Of<GuestShutdownEvent>(), Is.Empty, "a panic is not a shutdown");
            Assert.That(recorder.Of<GuestProtocolErrorEvent>(), Is.Empty, recorder.ToString());
            Assert.That(recorder.Actions.Where(a => a.Event is GuestPanickedEvent).Select(a => a.Action), Is.EqualTo(new[] { PolicyAction.Dump }));
        }
    }

    private QemuMachineOptions Options(string action, string initramfs, VhostUserBackendHost host, string device = PciDevice, string machine = "q35", string[]? kernelArguments = null) => new()
    {
        Action = action,
        Initramfs = initramfs,
        QemuBinary = Kernel.Qemu11,
        Machine = machine,
        VhostUserDevices = [(device, host.SocketPath)],
        KernelArguments = kernelArguments ?? [],
        Timeout = TimeSpan.FromSeconds(150),
    };

    private string BuildInitramfs(string action, string script, Action<InitramfsBuilder>? extra = null, string transport = "virtio_pci", string? parameters = null)
    {
        string path = WorkPath($"initramfs-{action}.cpio.gz");
        InitramfsBuilder builder = NewInitramfs()
            .AddModule(transport)
            .AddModule("watchdog");
        extra?.Invoke(builder);
        builder
            .AddKernelObject(Driver(Kernel), parameters)
            .AddWdctl()
            .AddAction(action, script)
            .Build(path);
        return path;
    }
}
