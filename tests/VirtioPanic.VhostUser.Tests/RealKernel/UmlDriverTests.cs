using VirtioPanic.Device;
using static VirtioPanic.VhostUser.Tests.RealKernel.Id35Guest;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

// The reference Linux driver built for User-Mode Linux (Debian's user-mode-linux package, a 6.1
// kernel as a host process; the module is built against linux-source of the package's
// Built-Using version by .ci/prerequisites-uml) with our WatchdogDevice attached as virtio device
// 35 through virtio_uml.device=SOCKET:35. UML sends a two-slot SET_MEM_TABLE and asks for 256
// entries on every queue; its configuration writes are the driver's own (one field each). Its
// limits: UML's own watchdog holds /dev/watchdog (ours is watchdog1 and has no watchdog sysfs:
// the ioctl helper reads everything), WATCHDOG_NOWAYOUT is on by default (nowayout=0 at insmod),
// no pretimeout governors, no kexec; a panic ends the process with SIGABRT after the notifiers ran.
internal sealed class UmlDriverTests : RealKernelTest
{
    [Test]
    public async Task Uml_NegotiatesEveryFeature_BoundsTimeLeftStop_ExpiryAfterKill_BootReasonCleared_SysrqPanicRecord()
    {
        using WatchdogDevice device = NewDevice("wdt-uml", TimeSpan.FromSeconds(10), maxTimeout: TimeSpan.FromSeconds(30));
        device.SetBootReason(WatchdogBootReason.Watchdog);
        string initramfs = WorkPath("initramfs-uml.cpio.gz");
        NewInitramfs()
            .AddKernelObject(UmlDriver(Kernel), "nowayout=0")
            .AddWdctl()
            .AddAction("uml", """
                dmesg | grep virtio_wdt
                echo "VP-WDT devices $(ls /dev/watchdog* | tr '\n' ' ')"
                echo "VP-WDT boot_reason $(cat /sys/class/watchdog/watchdog1/boot_reason)"
                vp_wdctl /dev/watchdog1 info boot t=3 t=0 t=31 timeout pet=2 left close
                watchdog -F -T 2 -t 1 /dev/watchdog1 &
                sleep 2
                kill -KILL $!
                echo "VP-WDT-KILLED"
                sleep 5
                echo "VP-WDT-PANIC"
                echo c > /proc/sysrq-trigger
                """)
            .Build(initramfs);
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));

        Task<QemuRun> boot = BootUmlAsync(new UmlMachineOptions
        {
            Action = "uml",
            Initramfs = initramfs,
            VirtioDevices = [(host.SocketPath, 35u)],
        });
        // The driver clears boot_reason at probe, before the helper's open STARTs the watchdog;
        // the panic's policy later sets it again for the next boot.
        WatchdogArmedEvent? firstStart = await recorder.WaitForAsync<WatchdogArmedEvent>(TimeSpan.FromSeconds(60));
        WatchdogBootReason atFirstStart = device.GetStatus().BootReason;
        QemuRun run = await boot;
        GuestPanickedEvent? panic = await recorder.WaitForAsync<GuestPanickedEvent>(TimeSpan.FromSeconds(5));
        TestContext.Out.WriteLine($"panic event: {(panic is null ? "none" : PolicyRecorder.Describe(panic))}");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.SerialLog, Does.Not.Contain("VP-INSMOD-FAILED"), run.ToString());
            Assert.That(GuestFeatures(run), Is.EqualTo((ulong)Offered), run.ToString());
            Assert.That(host.Backend.Statistics.NegotiatedFeatures & 0xffffff, Is.EqualTo((ulong)Offered));
            Assert.That(host.Backend.Statistics.DeviceActivations, Is.EqualTo(1), "UML's two-slot memory table and 256-entry queues were accepted");
            Assert.That(Line(run, "VP-WDT devices "), Does.Contain("/dev/watchdog1"), "UML's harddog holds /dev/watchdog");
            Assert.That(Line(run, "VP-WDT boot_reason "), Is.EqualTo("watchdog"));
            Assert.That(Wdctl(run, "info"), Is.EqualTo("0x83a0 virtio watchdog"), run.ToString());
            Assert.That(Wdctl(run, "boot"), Is.EqualTo("32"), "WDIOF_CARDRESET from boot_reason WATCHDOG");
            Assert.That(firstStart, Is.Not.Null, recorder.ToString());
            Assert.That(atFirstStart, Is.EqualTo(WatchdogBootReason.None), "the driver cleared it (a one-field write)");
            Assert.That(Wdctl(run, "t=3"), Is.EqualTo("3"));
            Assert.That(Wdctl(run, "t=0"), Is.EqualTo("error Invalid argument"), "below min_timeout");
            Assert.That(Wdctl(run, "t=31"), Is.EqualTo("error Invalid argument"), "above max_timeout");
            Assert.That(Wdctl(run, "left"), Is.AnyOf("1", "2", "3"));
            Assert.That(Wdctl(run, "close"), Is.EqualTo("0"));
            Assert.That(recorder.Of<WatchdogStoppedEvent>().Select(e => e.Reason), Is.EqualTo(new[] { WatchdogStopReason.DriverStop }), "nowayout=0: the magic close stopped it\n" + recorder);
            Assert.That(recorder.Of<WatchdogExpiredEvent>().Select(e => e.Timeout), Is.EqualTo(new[] { TimeSpan.FromSeconds(2) }), recorder.ToString());
            Assert.That(recorder.Actions.Where(a => a.Event is WatchdogExpiredEvent).Select(a => a.Action), Is.EqualTo(new[] { PolicyAction.Reset }));
            Assert.That(run.ExitCode, Is.EqualTo(128 + 6), "the panic ends UML with SIGABRT\n" + run);
        }

        Qemu11DriverTests.AssertSysrqPanic(run, recorder, panic, WatchdogEventSource.EventRecord);
    }

    [Test]
    public async Task Uml_EventsRefusedByTheDriver_SysrqCrashArrivesThroughPanicEventsAlone()
    {
        // The driver refuses an offered bit, so UML's final SET_FEATURES lacks
        // VHOST_USER_F_PROTOCOL_FEATURES and its rings run without SET_VRING_ENABLE.
        using WatchdogDevice device = NewDevice("wdt-uml", TimeSpan.FromSeconds(10));
        string initramfs = WorkPath("initramfs-uml.cpio.gz");
        NewInitramfs()
            .AddKernelObject(UmlDriver(Kernel), "nowayout=0 events=0")
            .AddAction("uml", """
                dmesg | grep virtio_wdt
                echo "VP-WDT-PANIC"
                echo c > /proc/sysrq-trigger
                """)
            .Build(initramfs);
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));

        QemuRun run = await BootUmlAsync(new UmlMachineOptions { Action = "uml", Initramfs = initramfs, VirtioDevices = [(host.SocketPath, 35u)] });
        GuestPanickedEvent? panic = await recorder.WaitForAsync<GuestPanickedEvent>(TimeSpan.FromSeconds(5));

        const WatchdogFeatures Expected = Offered & ~(WatchdogFeatures.Events | WatchdogFeatures.LogTail);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(GuestFeatures(run), Is.EqualTo((ulong)Expected), run.ToString());
            Assert.That(host.Backend.Statistics.NegotiatedFeatures & 0xffffff, Is.EqualTo((ulong)Expected));
            Assert.That(run.SerialLog, Does.Contain("panic reported through panic_events"), run.ToString());
            Assert.That(run.SerialLog, Does.Contain("Kernel panic - not syncing: sysrq triggered crash"), run.ToString());
            Assert.That(panic?.Source, Is.EqualTo(WatchdogEventSource.ConfigField), recorder.ToString());
            Assert.That(recorder.Of<GuestPanickedEvent>(), Has.Count.EqualTo(1));
            Assert.That(recorder.Of<GuestProtocolErrorEvent>(), Is.Empty, recorder.ToString());
        }
    }
}
