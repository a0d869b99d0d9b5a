using VirtioPanic.Device;

namespace VirtioPanic.Host.Demo;

// What the demo guest does in each boot, per scenario.
internal sealed partial class DemoVm
{
    private const string SysrqTail = "[   12.345678] sysrq: Trigger a crash\n[   12.345702] Kernel panic - not syncing: sysrq triggered crash\n[   12.345710] CPU: 0 PID: 1 Comm: sh Not tainted 6.1.0-demo #1";

    private void RunBoot(int boot, CancellationToken token)
    {
        try
        {
            WatchdogBootReason reason = Guest.Probe();
            if (boot > 1 || reason != WatchdogBootReason.None)
            {
                AfterReboot(reason);
                return;
            }

            switch (_settings.ScenarioKind)
            {
                case DemoScenario.Panic:
                    ArmAndPet(_settings.Pets);
                    Guest.Kernel("sysrq: Trigger a crash");
                    Guest.Panic("Kernel panic - not syncing: sysrq triggered crash", SysrqTail);
                    Panicked();
                    break;
                case DemoScenario.WatchdogStall:
                    Guest.StartWatchdog(_settings.WatchdogTimeout, _settings.Pretimeout);
                    PetFor(2);
                    Guest.Kernel("watchdog: BUG: soft lockup - CPU#0 stuck in a driver; nobody pets /dev/watchdog any more");
                    Hang();
                    break;
                case DemoScenario.CrashKernel:
                    CrashKernel();
                    break;
                case DemoScenario.Shutdown:
                    ArmAndPet(_settings.Pets);
                    CleanShutdown();
                    break;
                case DemoScenario.PanicStorm:
                    StormBoot();
                    break;
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // The host stopped or reset the vCPU.
        }
        catch (GuestNmiException)
        {
            NmiPanic();
        }
        catch (GuestPowerButtonException)
        {
            CleanShutdown();
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException)
        {
            if (!token.IsCancellationRequested)
            {
                HostLog.GuestCrashed(_log, ex);
            }
        }
    }

    // Every boot after the first: the guest comes up, pets once, and shuts down (the demo's end).
    private void AfterReboot(WatchdogBootReason reason)
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

        _ = reason;
    }

    private void ArmAndPet(int pets)
    {
        Guest.StartWatchdog(_settings.WatchdogTimeout, TimeSpan.Zero);
        PetFor(pets);
    }

    private void PetFor(int pets)
    {
        for (int i = 0; i < pets; i++)
        {
            Run(_settings.PetInterval, poll: Guest.PollNotices);
            Guest.Pet();
            Guest.Kernel($"watchdog: watchdog0: ping {i + 1}/{pets}");
        }
    }

    // A hung guest: nothing pets the watchdog; interrupts (pretimeout notices, NMI, power button) still arrive.
    private void Hang()
    {
        while (true)
        {
            Run(TimeSpan.FromMilliseconds(100), poll: Guest.PollNotices);
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
        Guest.Kernel($"Rebooting in {_settings.GuestPanicReboot.TotalSeconds:0.#} seconds.. (panic=N)");
        GuestReboot();
    }

    private void NmiPanic()
    {
        try
        {
            Guest.Kernel("NMI watchdog: Watchdog detected hard LOCKUP on cpu 0");
            Guest.Panic("Kernel panic - not syncing: Hard LOCKUP", "[   20.000001] NMI backtrace for cpu 0\n[   20.000002] Kernel panic - not syncing: Hard LOCKUP");
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
            Guest.Kernel("systemd-shutdown: Powering off.");
            Guest.StopWatchdog();
            Guest.ReportShutdown();
            Run(TimeSpan.FromMilliseconds(100), allowInterrupts: false);
            GuestPowerOff();
        }
        catch (OperationCanceledException)
        {
            // Reset or powered off by the host.
        }
    }

    // kdump: the panic notifier reports CRASH_LOADED, the crash kernel boots (probing the device
    // resets it), saves the vmcore, reports SHUTDOWN through panic_events, and reboots.
    private void CrashKernel()
    {
        ArmAndPet(2);
        Guest.Kernel("Oops: general protection fault in ext4_readdir");
        Guest.CrashLoaded("Kernel panic - not syncing: Fatal exception; crash kernel loaded", "[    9.876543] general protection fault: 0000 [#1] SMP\n[    9.876600] Kernel panic - not syncing: Fatal exception");
        Guest.Kernel("Starting crash kernel...");
        Guest.ResetDevice();
        Run(TimeSpan.FromMilliseconds(300), allowInterrupts: false);
        Guest.Probe();
        Guest.Kernel("kdump: saving vmcore to /var/crash ... done (12 MiB)");
        Run(TimeSpan.FromMilliseconds(500), allowInterrupts: false);
        Guest.PanicEvents(4);
        Guest.Kernel("kdump: rebooting");
        GuestReboot();
    }

    private void StormBoot()
    {
        Guest.StartWatchdog(_settings.WatchdogTimeout, TimeSpan.Zero);
        Run(TimeSpan.FromMilliseconds(200), allowInterrupts: false);
        Guest.Panic("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)", "[    1.234567] VFS: Cannot open root device \"vda1\" or unknown-block(0,0): error -6");
        Panicked();
    }
}
