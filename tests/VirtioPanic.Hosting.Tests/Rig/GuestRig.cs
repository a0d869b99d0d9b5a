using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.GuestDriver.Watchdog;
using VirtioPanic.Transport.Pci;

namespace VirtioPanic.Hosting.Tests.Rig;

// A watchdog device on the guest-driver harness: a TestMachine on a FakeTimeProvider with the
// device behind virtio-pci, a booted GuestKernel, and the harness's WatchdogDriver (Linux watchdog
// core and panic-notifier semantics) once Boot() has probed it.
internal sealed class GuestRig : IDisposable
{
    private readonly WatchdogDriverOptions? _driverOptions;
    private GuestKernel _kernel;
    private WatchdogDriver? _driver;

    // vcpus > 0: per-vCPU stall detection with that many slots (2 s stage one, 2 s stage two);
    // driverOptions: how Boot() probes (VcpuStallPanic, features).
    public GuestRig(FakeTimeProvider time, string id = "wdt0", TimeSpan? timeout = null, int vcpus = 0, WatchdogDriverOptions? driverOptions = null)
    {
        Time = time;
        _driverOptions = driverOptions;
        Machine = new TestMachine(new TestMachineOptions { Clock = time });
        Device = new WatchdogDevice(
            new WatchdogDeviceOptions
            {
                DeviceId = id, DefaultTimeout = timeout ?? TimeSpan.FromSeconds(5), MinTimeout = TimeSpan.FromSeconds(1), ResumeGrace = TimeSpan.FromSeconds(1),
                VcpuCount = vcpus, VcpuStallTimeout = TimeSpan.FromSeconds(2), VcpuStallSecondStage = TimeSpan.FromSeconds(2),
            },
            time);
        Pci = Machine.AddPciDevice(Device);
        _kernel = BootKernel();
    }

    public FakeTimeProvider Time { get; }

    public TestMachine Machine { get; }

    public VirtioPciFunction Pci { get; }

    public WatchdogDevice Device { get; }

    private GuestVirtioDevice VirtioDevice => _kernel.FindVirtioDevice(WatchdogDevice.VirtioDeviceId);

    // The driver's probe (features, queues, posted record and notice buffers, DRIVER_OK).
    public void Boot() => _driver = _kernel.Run(() => WatchdogDriver.Probe(VirtioDevice, _driverOptions));

    // The driver, for what the helpers here do not cover; call it through Run.
    public WatchdogDriver Driver => _driver ?? throw new InvalidOperationException("Boot() first");

    // Machine time passes in steps; the guest's timers (its hrtimers) run in between.
    public void Advance(TimeSpan total, TimeSpan step)
    {
        for (TimeSpan done = TimeSpan.Zero; done < total; done += step)
        {
            _kernel.WaitForQuiescence();
            Time.Advance(step < total - done ? step : total - done);
        }

        _kernel.WaitForQuiescence();
    }

    // Guest code on the vCPU.
    public T Run<T>(Func<WatchdogDriver, T> step) => _kernel.Run(() => step(Driver));

    // The guest reboots by itself: the platform resets (the device learns no reason) and a fresh kernel probes again.
    public void Reboot()
    {
        _kernel.Dispose();
        Device.OnVmReset(WatchdogBootReason.None);
        Pci.Reset();
        _kernel = BootKernel();
        Boot();
    }

    // The watchdog core's start on first use, then pings.
    public void Heartbeat()
    {
        WatchdogDriver driver = _driver ?? throw new InvalidOperationException("Boot() first");
        WatchdogResult result = _kernel.Run(() => driver.IsActive ? driver.Ping() : driver.Start());
        Assert.That(result, Is.EqualTo(WatchdogResult.Ok));
    }

    // A guest that recovers after an expiry starts its watchdog again (the device refuses a KEEPALIVE
    // of a disarmed watchdog; START or a baseline heartbeat re-arms it: VIRTIO_WDT_ARMED).
    public void Rearm()
    {
        WatchdogDriver driver = _driver ?? throw new InvalidOperationException("Boot() first");
        Assert.That(_kernel.Run(driver.Start), Is.EqualTo(WatchdogResult.Ok));
    }

    // The managed thread the guest's vCPU runs on (its register accesses reach the device there).
    public int VcpuThreadId() => _kernel.Run(() => Environment.CurrentManagedThreadId);

    // What a hypervisor does on a VM reset, synchronously on the calling thread: the device learns
    // why, the transport (and with it the device) returns to its power-on state.
    public void ResetPlatform(WatchdogBootReason reason)
    {
        Device.OnVmReset(reason);
        Pci.Reset();
    }

    // The minimal path (panic_events), which works without a driver, as a crash kernel or firmware uses it.
    public void Panic() => Minimal(WatchdogPanicEvent.Panicked);

    public void CrashLoaded() => Minimal(WatchdogPanicEvent.CrashLoaded);

    public void Shutdown() => Minimal(WatchdogPanicEvent.Shutdown);

    // The panic notifier's rich record (spec §6.5).
    public void PanicRecord(string message, uint vcpu, params ulong[] codes)
    {
        WatchdogDriver driver = _driver ?? throw new InvalidOperationException("Boot() first");
        PanicReportPath path = _kernel.Run(() => driver.Panic(new PanicReport { Message = message, VcpuId = vcpu, Codes = codes, CodeFormat = codes.Length > 0 ? PanicCodeFormat.WindowsBugcheck : PanicCodeFormat.Generic }));
        Assert.That(path, Is.EqualTo(PanicReportPath.EventRecord), "the record reached the device");
    }

    public void Dispose()
    {
        _kernel.Dispose();
        Device.Dispose();
        Machine.Dispose();
    }

    private void Minimal(WatchdogPanicEvent panicEvent) =>
        Assert.That(_kernel.Run(() => WatchdogDriver.ReportMinimal(VirtioDevice, panicEvent)), Is.True, "panic_events was not written");

    private GuestKernel BootKernel() => GuestKernel.Boot(Machine, new GuestKernelOptions { HangTimeout = TimeSpan.FromSeconds(10) });
}
