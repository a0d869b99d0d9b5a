using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Watchdog;

namespace VirtioPanic.Host.Demo;

// What the demo guest does in each boot, per scenario: the guest's userspace (the watchdog daemon,
// systemd, kdump) and kernel events, each a call into the harness's WatchdogDriver on the vCPU.
internal sealed partial class DemoVm
{
    private const string SysrqTail = "[   12.345678] sysrq: Trigger a crash\n[   12.345702] Kernel panic - not syncing: sysrq triggered crash\n[   12.345710] CPU: 0 PID: 1 Comm: sh Not tainted 6.1.0-demo #1";

    private void RunBoot(int boot, CancellationToken token)
    {
        try
        {
            WatchdogBootReason reason = BootKernel(token);
            if (boot > 1 || reason != WatchdogBootReason.None)
            {
                AfterReboot();
                return;
            }

            switch (_settings.ScenarioKind)
            {
                case DemoScenario.Panic:
                    ArmAndPet(_settings.Pets);
                    Kernel("sysrq: Trigger a crash");
                    Panic("Kernel panic - not syncing: sysrq triggered crash", SysrqTail);
                    Panicked();
                    break;
                case DemoScenario.WatchdogStall:
                    StartWatchdog(_settings.Pretimeout);
                    PetFor(2);
                    Kernel("watchdog: BUG: soft lockup - CPU#0 stuck in a driver; nobody pets /dev/watchdog any more");
                    Hang();
                    break;
                case DemoScenario.CrashKernel:
                    CrashKernel(token);
                    break;
                case DemoScenario.Shutdown:
                    ArmAndPet(_settings.Pets);
                    CleanShutdown();
                    break;
                case DemoScenario.PanicStorm:
                    StormBoot();
                    break;
                case DemoScenario.VcpuStall:
                    VcpuStallBoot();
                    break;
            }
        }
        catch (GuestNmiException)
        {
            NmiPanic();
        }
        catch (GuestPowerButtonException)
        {
            CleanShutdown();
        }
        catch (Exception ex) when (token.IsCancellationRequested)
        {
            // The host stopped, reset or powered off the VM under the guest.
            _ = ex;
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or ObjectDisposedException)
        {
            HostLog.GuestCrashed(_log, ex);
        }
    }

    // Every boot after the first: the guest comes up, pets once, and shuts down (the demo's end).
    private void AfterReboot()
    {
        if (_settings.ScenarioKind == DemoScenario.PanicStorm)
        {
            StormBoot();
            return;
        }

        try
        {
            ArmAndPet(1);
            CleanShutdown();
        }
        catch (GuestNmiException)
        {
            NmiPanic();
        }
        catch (GuestPowerButtonException)
        {
            CleanShutdown();
        }
    }

    private void StartWatchdog(TimeSpan pretimeout)
    {
        OnCpu(d => d.SetTimeout(_settings.WatchdogTimeout));
        Check(OnCpu(d => d.Start()), "start");
        if (pretimeout > TimeSpan.Zero)
        {
            Check(OnCpu(d => d.SetPretimeout(pretimeout)), "set_pretimeout");
        }

        Kernel($"watchdog: watchdog0: started, timeout {_settings.WatchdogTimeout.TotalSeconds:0.0} s{(pretimeout > TimeSpan.Zero ? $", pretimeout {pretimeout.TotalSeconds:0.0} s" : string.Empty)}");
    }

    private void ArmAndPet(int pets)
    {
        StartWatchdog(TimeSpan.Zero);
        PetFor(pets);
    }

    private void PetFor(int pets)
    {
        for (int i = 0; i < pets; i++)
        {
            Run(_settings.PetInterval);
            Check(OnCpu(d => d.Ping()), "ping");
            TimeSpan? left = OnCpu(d => d.GetTimeLeft());
            Kernel($"watchdog: watchdog0: ping {i + 1}/{pets}{(left is TimeSpan l ? $", {l.TotalSeconds:0.0} s left" : string.Empty)}");
        }
    }

    // A hung guest: nothing pets the watchdog; interrupts (pretimeout notices, NMI, power button) still arrive.
    private void Hang()
    {
        while (true)
        {
            Run(TimeSpan.FromMilliseconds(100));
        }
    }

    // A panicked kernel: spins with interrupts off until reset, or reboots itself after panic=N.
    private void Panicked()
    {
        if (_settings.GuestPanicReboot <= TimeSpan.Zero)
        {
            while (true)
            {
                Run(TimeSpan.FromMilliseconds(100), allowInterrupts: false);
            }
        }

        Run(_settings.GuestPanicReboot, allowInterrupts: false);
        Kernel($"Rebooting in {_settings.GuestPanicReboot.TotalSeconds:0.#} seconds.. (panic=N)");
        GuestReboot();
    }

    private void Panic(string message, string logTail)
    {
        PanicReportPath path = OnCpu(d => d.Panic(new PanicReport { Message = message, LogTail = logTail, VcpuId = 0, GuestTime = _uptime.Elapsed }));
        Kernel($"virtio_wdt: panic reported through {path}");
    }

    private void NmiPanic()
    {
        try
        {
            Kernel("NMI watchdog: Watchdog detected hard LOCKUP on cpu 0");
            Panic("Kernel panic - not syncing: Hard LOCKUP", "[   20.000001] NMI backtrace for cpu 0\n[   20.000002] Kernel panic - not syncing: Hard LOCKUP");
            Panicked();
        }
        catch (OperationCanceledException)
        {
            // Reset or powered off by the host.
        }
    }

    private void CleanShutdown()
    {
        try
        {
            Kernel("systemd-shutdown: Powering off.");
            Check(OnCpu(d => d.Stop()), "stop");
            Kernel("watchdog: watchdog0: stopped");
            OnCpu(d => d.Shutdown());
            Run(TimeSpan.FromMilliseconds(100), allowInterrupts: false);
            GuestPowerOff();
        }
        catch (OperationCanceledException)
        {
            // Reset or powered off by the host.
        }
    }

    // kdump: the panic notifier reports CRASH_LOADED, the crash kernel boots (kexec, no platform
    // reset; its driver's probe resets the device), saves the vmcore, reports SHUTDOWN through
    // panic_events, and reboots.
    private void CrashKernel(CancellationToken token)
    {
        ArmAndPet(2);
        OnCpu(d => d.CrashKernelLoaded = true);
        Kernel("Oops: general protection fault in ext4_readdir");
        Panic("Kernel panic - not syncing: Fatal exception; crash kernel loaded", "[    9.876543] general protection fault: 0000 [#1] SMP\n[    9.876600] Kernel panic - not syncing: Fatal exception");
        Kernel("kexec: starting the crash kernel");
        lock (_lock)
        {
            DisposeKernelUnsynchronized();
        }

        Run(TimeSpan.FromMilliseconds(300), allowInterrupts: false);
        BootKernel(token);
        Kernel("kdump: saving vmcore to /var/crash ... done (12 MiB)");
        Run(TimeSpan.FromMilliseconds(500), allowInterrupts: false);
        OnCpu(d => WatchdogDriver.ReportMinimal(d.Device, WatchdogPanicEvent.Shutdown));
        Kernel("kdump: rebooting");
        GuestReboot();
    }

    private void StormBoot()
    {
        StartWatchdog(TimeSpan.Zero);
        Run(TimeSpan.FromMilliseconds(200), allowInterrupts: false);
        Panic("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)", "[    1.234567] VFS: Cannot open root device \"vda1\" or unknown-block(0,0): error -6");
        Panicked();
    }

    // Every CPU's hrtimer pets its vcpu_heartbeat slot, the watchdog daemon pets watchdog0 from CPU 0;
    // then CPU 1 hard-locks with interrupts off. The device's VCPU_STALL notice arrives on another
    // CPU, and the driver panics naming CPU 1 (vcpu_stall_panic=1); the policy acts on the panic.
    private void VcpuStallBoot()
    {
        StartWatchdog(TimeSpan.Zero);
        int cpus = OnCpu(d => d.VcpuCount);
        if (cpus < 2)
        {
            Kernel($"virtio_wdt: VIRTIO_WDT_F_VCPU_STALL not negotiated (vcpu_count {cpus}); nothing to show");
            CleanShutdown();
            return;
        }

        Check(OnCpu(d => d.StartVcpuPetting()), "vcpu petting");
        TimeSpan interval = OnCpu(d => d.VcpuPetInterval);
        Kernel($"virtio_wdt: per-CPU stall detection on {cpus} CPUs: each CPU pets every {interval.TotalMilliseconds:0} ms, stall after {OnCpu(d => d.VcpuTimeout).TotalSeconds:0.0} s of its run time");
        PetFor(2);
        Kernel("CPU#1: spinning with interrupts off in a broken driver (hard LOCKUP); its hrtimer stops");
        OnCpu(d =>
        {
            d.StallCpu(1);
            return 0;
        });

        // CPU 0 runs on: the daemon pets watchdog0 until the notice comes (bounded).
        for (int i = 0; i < 40 && !_vcpuStallPanic; i++)
        {
            Run(TimeSpan.FromMilliseconds(250));
            Check(OnCpu(d => d.Ping()), "ping");
        }

        Panicked();
    }

    private void Check(WatchdogResult result, string operation)
    {
        if (result != WatchdogResult.Ok)
        {
            Kernel($"watchdog: watchdog0: {operation} failed: {result}");
        }
    }
}
