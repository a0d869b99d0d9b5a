using System.Globalization;
using System.Text.RegularExpressions;
using VirtioPanic.Device;
using static VirtioPanic.VhostUser.Tests.RealKernel.Id35Guest;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

// Per-vCPU stall detection (VIRTIO_WDT_F_VCPU_STALL, spec §6.12) with the reference Linux driver
// in Debian's 6.1 kernel on two vCPUs under QEMU 11 (TCG), on QEMU's generic vhost-user device
// with the 36-byte configuration, against our WatchdogDevice behind VhostUserBackend.
//
// The back end does not see vCPUs, so the device counts every vCPU's run time on the VM's run
// time (the fallback of §6.12, WDT-DEV-49; the device says so in its status): here VM run time
// stands in for vCPU run time. That is safe for this driver because it pets from per-CPU
// hrtimers, which fire on idle CPUs too; the idle test below is the check.
internal sealed partial class Qemu11VcpuStallTests : RealKernelTest
{
    private const string PciDevice = "vhost-user-test-device-pci,virtio-id=35,num_vqs=3,vq_size=64,config_size=36";
    private static readonly TimeSpan s_stallTimeout = TimeSpan.FromSeconds(3);

    // Every interrupt that can move goes to CPU 0 first (the x86 vector allocator may have put a
    // virtio vector on CPU 1, which then never takes the notice), then CPU 1 is hard-locked: the
    // test module's init disables interrupts on the CPU that loads it and spins.
    private const string LockupScript = """
        dmesg | grep virtio_wdt
        for f in /proc/irq/*/smp_affinity; do echo 1 > $f 2>/dev/null; done
        echo "VP-STALL cpus $(cat /sys/devices/system/cpu/online)"
        sleep 1
        echo "VP-STALL-LOCK"
        taskset -c 1 insmod /lib/vp_cpu_lockup.ko &
        sleep 30
        echo "VP-STALL-NO-PANIC"
        """;

    [Test]
    public async Task Pci_TwoCpus_Cpu1HardLocked_DeviceReportsVcpu1Stalled_GuestPanicsNamingCpu1()
    {
        using WatchdogDevice device = NewStallDevice();
        string initramfs = BuildInitramfs("lockup", LockupScript, withLockupModule: true);
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));

        QemuRun run = await BootAsync(Options("lockup", initramfs, host));
        GuestPanickedEvent? panic = await recorder.WaitForAsync<GuestPanickedEvent>(TimeSpan.FromSeconds(5));
        VcpuStalledEvent? stalled = await recorder.WaitForAsync<VcpuStalledEvent>(TimeSpan.FromSeconds(1));
        WatchdogDeviceStatus status = device.GetStatus();
        List<WatchdogEvent> events = [.. recorder.Events];
        Match panicLine = PanicLine().Match(run.SerialLog);

        using (Assert.EnterMultipleScope())
        {
            AssertNegotiated(run, host, device);
            Assert.That(run.SerialLog, Does.Contain("VP-STALL-LOCK"), run.ToString());
            Assert.That(run.SerialLog, Does.Not.Contain("VP-STALL-NO-PANIC"), "the guest panicked at stage one\n" + run);

            // Stage one on the device: vCPU 1, and only vCPU 1 (the panicking CPU said OFFLINE for
            // itself before panic() kept its interrupts off), after at least the timeout.
            Assert.That(recorder.Of<VcpuStalledEvent>().Select(e => e.Vcpu), Is.EqualTo(new[] { 1 }), recorder.ToString());
            Assert.That(stalled?.StalledFor, Is.GreaterThanOrEqualTo(s_stallTimeout));
            Assert.That(stalled?.Timeout, Is.EqualTo(s_stallTimeout));

            // The guest's stage one: the driver logged the notice and panicked naming CPU 1.
            Assert.That(run.SerialLog, Does.Contain("virtio_wdt: vCPU 1 stalled for "), "the notice, logged (pr_emerg)\n" + run);
            Assert.That(panicLine.Success, Is.True, "Kernel panic - not syncing: virtio_wdt: vCPU 1 stalled for N ms\n" + run);
            Assert.That(panicLine.Groups["cpu"].Value, Is.EqualTo("1"));
            Assert.That(long.Parse(panicLine.Groups["ms"].Value, CultureInfo.InvariantCulture), Is.EqualTo(stalled?.StalledFor.Ticks / TimeSpan.TicksPerMillisecond), "how long: the notice's stalled_ms, the device's StalledFor in whole ms");

            // The panic record reached the host through eventq, with that message, from CPU 0
            // (the notice's interrupt: CPU 1 has interrupts off).
            Assert.That(panic, Is.Not.Null, recorder.ToString());
            Assert.That(panic?.Source, Is.EqualTo(WatchdogEventSource.EventRecord));
            Assert.That(panic?.Message, Does.Match(@"^virtio_wdt: vCPU 1 stalled for \d+ ms$"));
            Assert.That(panic?.Message, Is.EqualTo(panicLine.Success ? panicLine.Value["Kernel panic - not syncing: ".Length..].TrimEnd() : null), "the record carries the kernel's panic string");
            Assert.That(panic?.VcpuId, Is.EqualTo(0u), "reported by the healthy CPU");
            Assert.That(events.FindIndex(e => e is VcpuStalledEvent), Is.LessThan(events.FindIndex(e => e is GuestPanickedEvent)), "stage one, then the guest's panic\n" + recorder);

            // The panic took over (WDT-DEV-47): no stage two, nothing tracked any more.
            Assert.That(recorder.Of<VcpuStallExpiredEvent>(), Is.Empty, recorder.ToString());
            Assert.That(status.TrackedVcpus + status.StalledVcpus, Is.Zero, "every vCPU untracked after the panic report");
            Assert.That(recorder.Of<GuestProtocolErrorEvent>(), Is.Empty, "every heartbeat write was valid\n" + recorder);
        }
    }

    // vcpu_stall_panic=0: the guest only logs the notice, CPU 1 stays locked, and the device's
    // stage two fires vcpu_stage2_ms of VM run time later (the host's stall policy acts then).
    // The guest cannot end this run itself (its poweroff waits for CPU 1), so the test kills QEMU
    // once stage two was reported.
    [Test]
    public async Task Pci_Cpu1HardLocked_LogOnly_NoGuestPanic_DeviceFiresStageTwoForVcpu1()
    {
        using WatchdogDevice device = NewStallDevice(secondStage: TimeSpan.FromSeconds(4));
        string initramfs = BuildInitramfs("lockup", LockupScript, withLockupModule: true, parameters: "vcpu_stall_panic=0");
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));
        using var end = new CancellationTokenSource();

        Task<QemuRun> boot = BootAsync(Options("lockup", initramfs, host), end.Token);
        VcpuStallExpiredEvent? expired = await recorder.WaitForAsync<VcpuStallExpiredEvent>(TimeSpan.FromSeconds(60));
        await end.CancelAsync();
        QemuRun run = await boot;
        IReadOnlyList<VcpuStalledEvent> stalls = recorder.Of<VcpuStalledEvent>();
        VcpuStalledEvent? stalled = stalls.Count > 0 ? stalls[0] : null;

        using (Assert.EnterMultipleScope())
        {
            AssertNegotiated(run, host, device);
            Assert.That(run.SerialLog, Does.Contain("VP-STALL-LOCK"), run.ToString());
            Assert.That(run.SerialLog, Does.Contain("virtio_wdt: vCPU 1 stalled for "), "the notice, logged\n" + run);
            Assert.That(run.SerialLog, Does.Not.Contain("Kernel panic"), "vcpu_stall_panic=0: no panic\n" + run);
            Assert.That(recorder.Of<GuestPanickedEvent>(), Is.Empty, recorder.ToString());
            Assert.That(recorder.Of<VcpuStalledEvent>().Select(e => e.Vcpu), Is.EqualTo(new[] { 1 }), recorder.ToString());
            Assert.That(expired, Is.Not.Null, "stage two for the vCPU that never pet again\n" + recorder);
            Assert.That(expired?.Vcpu, Is.EqualTo(1));
            Assert.That(expired?.SinceStall, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(4)), "vcpu_stage2_ms of VM run time after stage one");
            Assert.That(expired?.StalledFor, Is.EqualTo(stalled?.StalledFor));
            Assert.That(recorder.Of<VcpuRecoveredEvent>(), Is.Empty, "CPU 1 never pet again");
            Assert.That(run.TimedOut, Is.True, "the test ended the run (QEMU killed by its PID)");
        }
    }

    // Both CPUs idle (the shell sleeps) for three stall timeouts: the pinned hrtimers keep petting
    // on idle CPUs, so nothing stalls although every vCPU's run time is the VM's. Then rmmod with
    // the timers running: they are stopped before the device is reset (no oops, no stray write).
    [Test]
    public async Task Pci_TwoCpusIdleForThreeStallTimeouts_NoStall_ThenRmmodWithTimersRunning()
    {
        using WatchdogDevice device = NewStallDevice();
        string initramfs = BuildInitramfs("idle", """
            dmesg | grep virtio_wdt
            echo "VP-STALL cpus $(cat /sys/devices/system/cpu/online)"
            sleep 9
            echo "VP-STALL-IDLE-DONE"
            rmmod virtio_wdt
            echo "VP-STALL-RMMOD $?"
            sleep 4
            """);
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));
        await using var sampler = new VcpuStatusSampler(device);

        QemuRun run = await BootAsync(Options("idle", initramfs, host));
        IReadOnlyList<int> tracked = await sampler.StopAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted && !run.TimedOut, Is.True, run.ToString());
            AssertNegotiated(run, host, device);
            Assert.That(Line(run, "VP-STALL cpus "), Is.EqualTo("0-1"));
            Assert.That(run.SerialLog, Does.Contain("VP-STALL-IDLE-DONE"));
            Assert.That(Line(run, "VP-STALL-RMMOD "), Is.EqualTo("0"), run.ToString());
            Assert.That(tracked, Does.Contain(2), "both CPUs petted (tracked vCPUs over the run: " + string.Join(",", tracked) + ")");
            Assert.That(recorder.Of<VcpuStalledEvent>(), Is.Empty, "no stall on idle CPUs\n" + recorder);
            Assert.That(recorder.Of<VcpuStallExpiredEvent>(), Is.Empty);
            Assert.That(sampler.MaxStalled, Is.Zero);
            AssertNoKernelTrouble(run);
            Assert.That(recorder.Of<GuestProtocolErrorEvent>(), Is.Empty, "no heartbeat after the reset, none invalid\n" + recorder);
        }
    }

    // CPU hot-unplug: the offline callback writes OFFLINE for CPU 1 (after cancelling its timer),
    // so the device stops tracking it and does not report it in three stall timeouts; online
    // again, it pets again. Without the OFFLINE the device would report CPU 1 after 3 s.
    [Test]
    public async Task Pci_Cpu1HotUnplugged_NotReportedForThreeStallTimeouts_TrackedAgainWhenOnline()
    {
        using WatchdogDevice device = NewStallDevice();
        string initramfs = BuildInitramfs("unplug", """
            dmesg | grep virtio_wdt
            sleep 1
            echo 0 > /sys/devices/system/cpu/cpu1/online
            echo "VP-STALL offline $(cat /sys/devices/system/cpu/cpu1/online) online $(cat /sys/devices/system/cpu/online)"
            sleep 9
            echo 1 > /sys/devices/system/cpu/cpu1/online
            echo "VP-STALL back $(cat /sys/devices/system/cpu/cpu1/online)"
            sleep 2
            """);
        await using var recorder = new PolicyRecorder(device, Policy);
        await using var host = new VhostUserBackendHost(device, WorkPath("wdt.sock"));
        await using var sampler = new VcpuStatusSampler(device);

        QemuRun run = await BootAsync(Options("unplug", initramfs, host));
        IReadOnlyList<int> tracked = await sampler.StopAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted && !run.TimedOut, Is.True, run.ToString());
            AssertNegotiated(run, host, device);
            Assert.That(Line(run, "VP-STALL offline "), Is.EqualTo("0 online 0"), run.ToString());
            Assert.That(Line(run, "VP-STALL back "), Is.EqualTo("1"));
            Assert.That(recorder.Of<VcpuStalledEvent>(), Is.Empty, "no stall for the CPU that went offline\n" + recorder);
            Assert.That(IsSubsequence(tracked, [2, 1, 2]), Is.True, "tracked vCPUs 2, then 1 while CPU 1 is offline, then 2 again: " + string.Join(",", tracked));
            AssertNoKernelTrouble(run);
            Assert.That(recorder.Of<GuestProtocolErrorEvent>(), Is.Empty, recorder.ToString());
        }
    }

    private static void AssertNegotiated(QemuRun run, VhostUserBackendHost host, WatchdogDevice device)
    {
        Assert.That(device.GetStatus().VcpuClock, Is.EqualTo(VcpuClockSource.VmRunTime), "behind vhost-user the device counts the VM's run time for every vCPU and says so (WDT-DEV-49)");
        Assert.That(host.Backend.Statistics.NegotiatedFeatures & (ulong)WatchdogFeatures.VcpuStall, Is.Not.Zero, "VIRTIO_WDT_F_VCPU_STALL negotiated\n" + run);
        Assert.That(run.SerialLog, Does.Contain("per-CPU heartbeats: 2 vCPU slots, stall after 3000 ms, pet every 750 ms"), run.ToString());
    }

    private static void AssertNoKernelTrouble(QemuRun run)
    {
        foreach (string trouble in (string[])["BUG:", "Oops", "WARNING:", "general protection fault", "Kernel panic"])
        {
            Assert.That(run.SerialLog, Does.Not.Contain(trouble), run.ToString());
        }
    }

    private static bool IsSubsequence(IReadOnlyList<int> values, int[] wanted)
    {
        int next = 0;
        foreach (int value in values)
        {
            if (next < wanted.Length && value == wanted[next])
            {
                next++;
            }
        }

        return next == wanted.Length;
    }

    private static WatchdogDevice NewStallDevice(TimeSpan? secondStage = null) => new(new WatchdogDeviceOptions
    {
        DeviceId = "wdt-stall",
        Features = WatchdogFeatures.All,
        DefaultTimeout = TimeSpan.FromSeconds(20),
        MinTimeout = TimeSpan.FromSeconds(1),
        MaxTimeout = TimeSpan.FromSeconds(60),
        VcpuCount = 2,
        VcpuStallTimeout = s_stallTimeout,
        VcpuStallSecondStage = secondStage ?? TimeSpan.FromSeconds(20),   // by default longer than the guest's way to its panic
    });

    private QemuMachineOptions Options(string action, string initramfs, VhostUserBackendHost host) => new()
    {
        Action = action,
        Initramfs = initramfs,
        QemuBinary = Kernel.Qemu11,
        Machine = "q35",
        Cpus = 2,
        VhostUserDevices = [(PciDevice, host.SocketPath)],
        // A boot with two vCPUs takes 10-16 s under TCG; a guest that does not panic after the
        // lockup hangs in poweroff (the kernel's own shutdown waits for CPU 1), so keep this short.
        Timeout = TimeSpan.FromSeconds(90),
    };

    private string BuildInitramfs(string action, string script, bool withLockupModule = false, string? parameters = null)
    {
        string path = WorkPath($"initramfs-{action}.cpio.gz");
        InitramfsBuilder builder = NewInitramfs()
            .AddModule("virtio_pci")
            .AddModule("watchdog")
            .AddKernelObject(Driver(Kernel), parameters)
            .AddAction(action, script);
        if (withLockupModule)
        {
            // Not loaded by /init: the script loads it pinned to CPU 1.
            string ko = GuestModuleBuilder.BuildWithOwnKbuild(Kernel, GuestModuleBuilder.GuestSource("cpu_lockup"), "vp_cpu_lockup");
            builder.AddFile("/lib/vp_cpu_lockup.ko", File.ReadAllBytes(ko));
        }

        builder.Build(path);
        return path;
    }

    [GeneratedRegex(@"Kernel panic - not syncing: virtio_wdt: vCPU (?<cpu>\d+) stalled for (?<ms>\d+) ms")]
    private static partial Regex PanicLine();

    // Samples the device's tracked/stalled vCPU counts every 50 ms while the guest runs, keeping
    // each change (the status is the device's own view of its slots).
    private sealed class VcpuStatusSampler : IAsyncDisposable
    {
        private readonly List<int> _tracked = [];
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;

        internal VcpuStatusSampler(WatchdogDevice device)
        {
            _loop = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    WatchdogDeviceStatus status = device.GetStatus();
                    lock (_tracked)
                    {
                        if (_tracked.Count == 0 || _tracked[^1] != status.TrackedVcpus)
                        {
                            _tracked.Add(status.TrackedVcpus);
                        }

                        MaxStalled = Math.Max(MaxStalled, status.StalledVcpus);
                    }

                    try
                    {
                        await Task.Delay(50, _stop.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                }
            });
        }

        internal int MaxStalled { get; private set; }

        internal async Task<IReadOnlyList<int>> StopAsync()
        {
            await _stop.CancelAsync().ConfigureAwait(false);
            await _loop.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            lock (_tracked)
            {
                return [.. _tracked];
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_stop.IsCancellationRequested)
            {
                await StopAsync().ConfigureAwait(false);
            }

            _stop.Dispose();
        }
    }
}
