using System.Diagnostics;
using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Watchdog;
using VirtioPanic.Hosting;
using VirtioPanic.Hosting.Dumps;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Host.Demo;

// The demonstration VM, built on the guest-driver harness: a TestMachine (RAM, PCI host bridge,
// virtio-mmio slots, interrupt controller) with the watchdog device behind virtio-pci or
// virtio-mmio, a GuestKernel (vCPU thread, firmware, bus scan, Linux-like virtio core) and the
// harness's WatchdogDriver (Linux watchdog core and panic notifier semantics). The boot scripts
// (DemoVm.Boot.cs) play the guest's userspace and kernel on a script thread and run every driver
// call on the vCPU. This class is also the hypervisor side of IVmControl.
internal sealed partial class DemoVm : IVmControl, IDisposable
{
    private const ulong RamSize = 16 << 20;
    private const int MaxBoots = 6;

    private readonly Lock _lock = new();
    private readonly DemoSettings _settings;
    private readonly ILogger _log;
    private readonly ILogger _guestLog;
    private readonly TestMachine _machine;
    private readonly VirtioPciFunction? _pci;
    private readonly VirtioMmioTransport? _mmio;
    private readonly ManualResetEventSlim _running = new(true);
    private readonly TaskCompletionSource _finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenSource _boot = new();
    private Task _script = Task.CompletedTask;
    private GuestKernel? _kernel;
    private WatchdogDriver? _driver;
    private Stopwatch _uptime = Stopwatch.StartNew();
    private DemoVmState _state = DemoVmState.Off;
    private int _boots;
    private long _interrupts;
    private volatile bool _nmi;
    private volatile bool _powerButton;
    private volatile bool _vcpuStallPanic;

    internal DemoVm(DemoSettings settings, WatchdogDevice device, ILoggerFactory loggers)
    {
        _settings = settings;
        Device = device;
        _log = loggers.CreateLogger("VirtioPanic.Host.Demo.Vm");
        _guestLog = loggers.CreateLogger("guest");
        _machine = new TestMachine(new TestMachineOptions { RamSize = RamSize, Clock = TimeProvider.System });
        if (string.Equals(settings.Transport, "mmio", StringComparison.OrdinalIgnoreCase))
        {
            _mmio = _machine.AddMmioDevice(device, logger: loggers.CreateLogger("VirtioPanic.Transport.Mmio"));
        }
        else
        {
            _pci = _machine.AddPciDevice(device, logger: loggers.CreateLogger("VirtioPanic.Transport.Pci"));
        }
    }

    internal WatchdogDevice Device { get; }

    internal Task Finished => _finished.Task;

    internal int Boots => Volatile.Read(ref _boots);

    internal long Interrupts
    {
        get
        {
            lock (_lock)
            {
                return _interrupts + (_kernel?.Cpu.InterruptsHandled ?? 0);
            }
        }
    }

    internal string TransportName => _pci is not null ? "virtio-pci" : "virtio-mmio";

    internal bool Packed => string.Equals(_settings.Ring, "packed", StringComparison.OrdinalIgnoreCase);

    internal DemoVmState State
    {
        get
        {
            lock (_lock)
            {
                return _state;
            }
        }
    }

    internal PolicyService? Manager { get; set; }

    internal void PowerOn()
    {
        lock (_lock)
        {
            _state = DemoVmState.Running;
            StartBootUnsynchronized();
        }
    }

    // Stops the guest and powers the VM off (the end of the demo).
    internal void Stop()
    {
        StopGuest();
        PowerOffPlatform();
    }

    // Called by the guest between steps: honours pause, stop, NMI and the power button.
    internal void Checkpoint(bool allowInterrupts = true)
    {
        CancellationToken token = _boot.Token;
        _running.Wait(token);
        token.ThrowIfCancellationRequested();
        if (!allowInterrupts)
        {
            return;
        }

        if (_nmi)
        {
            _nmi = false;
            throw new GuestNmiException();
        }

        if (_powerButton)
        {
            _powerButton = false;
            throw new GuestPowerButtonException();
        }
    }

    // Lets run time pass (paused time does not count), checking in between.
    internal void Run(TimeSpan duration, bool allowInterrupts = true)
    {
        TimeSpan left = duration;
        while (left > TimeSpan.Zero)
        {
            Checkpoint(allowInterrupts);
            TimeSpan step = left < TimeSpan.FromMilliseconds(20) ? left : TimeSpan.FromMilliseconds(20);
            Thread.Sleep(step);
            left -= step;
        }
    }

    // The guest powers itself off (ACPI S5).
    internal void GuestPowerOff()
    {
        HostLog.VmPoweredOff(_log, "guest shut down");
        PowerOffPlatform();
    }

    // The guest reboots itself (reboot(2), panic=N, kdump's reboot): the platform resets and boots again.
    internal void GuestReboot()
    {
        HostLog.GuestRebooted(_log);
        lock (_lock)
        {
            DisposeKernelUnsynchronized();
            Device.OnVmReset(WatchdogBootReason.None);
            ResetTransportUnsynchronized();
            StartBootUnsynchronized();
        }

        _ = Manager?.NotifyGuestResetAsync(Device.Id);
    }

    public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (_state != DemoVmState.Running)
            {
                return ValueTask.FromResult(VmControlResult.Failure($"the VM is {_state}"));
            }

            _state = DemoVmState.Paused;
            _running.Reset();
            Device.Pause();
        }

        HostLog.VmPaused(_log, context.PolicyAction);
        return ValueTask.FromResult(VmControlResult.Success);
    }

    public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (_state != DemoVmState.Paused)
            {
                return ValueTask.FromResult(VmControlResult.Failure($"the VM is {_state}"));
            }

            _state = DemoVmState.Running;
            Device.Resume();
            _running.Set();
        }

        HostLog.VmResumed(_log);
        return ValueTask.FromResult(VmControlResult.Success);
    }

    public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken)
    {
        if (Boots >= MaxBoots)
        {
            return ValueTask.FromResult(VmControlResult.Failure($"the demo VM has already booted {MaxBoots} times"));
        }

        HostLog.VmReset(_log, context.PolicyAction);
        StopGuest();
        lock (_lock)
        {
            // A platform reset: the device learns it (keeping the boot reason the policy service
            // set), the transport returns to power-on state, and firmware boots a new guest.
            Device.OnVmReset(context.BootReason);
            ResetTransportUnsynchronized();
            _state = DemoVmState.Running;
            _running.Set();
            StartBootUnsynchronized();
        }

        return ValueTask.FromResult(VmControlResult.Success);
    }

    public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken)
    {
        StopGuest();
        PowerOffPlatform();
        HostLog.VmPoweredOff(_log, context.PolicyAction);
        return ValueTask.FromResult(VmControlResult.Success);
    }

    public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken)
    {
        if (State != DemoVmState.Running)
        {
            return ValueTask.FromResult(VmControlResult.Failure("the VM is not running"));
        }

        _powerButton = true;
        HostLog.VmPowerButton(_log);
        return ValueTask.FromResult(VmControlResult.Success);
    }

    public async ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken)
    {
        // An ELF core that crash and gdb open (ElfCoreWriter): a PT_LOAD per guest-memory region at
        // its physical address, and a note for the demo's one vCPU. The guest is C# code on a host
        // thread, so there are no architectural registers to record: the note carries zeros.
        await using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 0, useAsync: true);
        long bytes;
        try
        {
            bytes = await ElfCoreWriter.WriteAsync(file, _machine.Memory, [new ElfCoreCpu(0)], cancellationToken).ConfigureAwait(false);
        }
        catch (InvalidOperationException ex)
        {
            return VmControlResult.Failure(ex.Message);
        }

        HostLog.VmDumped(_log, path, (ulong)bytes);
        return VmControlResult.Success;
    }

    public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken)
    {
        if (State != DemoVmState.Running)
        {
            return ValueTask.FromResult(VmControlResult.Failure("the VM is not running"));
        }

        _nmi = true;
        HostLog.VmNmi(_log);
        return ValueTask.FromResult(VmControlResult.Success);
    }

    public void Dispose()
    {
        Stop();
        _machine.Dispose();
        _running.Dispose();
        _boot.Dispose();
    }

    // Runs a driver call on the vCPU.
    private T OnCpu<T>(Func<WatchdogDriver, T> call)
    {
        Checkpoint(allowInterrupts: false);
        GuestKernel kernel = _kernel ?? throw new OperationCanceledException(_boot.Token);
        WatchdogDriver driver = _driver ?? throw new OperationCanceledException(_boot.Token);
        return kernel.Run(() => call(driver));
    }

    // Stops the script thread and the vCPU (bounded wait).
    private void StopGuest()
    {
        Task script;
        lock (_lock)
        {
            _boot.Cancel();
            _running.Set();
            DisposeKernelUnsynchronized();
            script = _script;
        }

        script.Wait(TimeSpan.FromSeconds(3));
    }

    private void PowerOffPlatform()
    {
        lock (_lock)
        {
            _boot.Cancel();
            _running.Set();
            DisposeKernelUnsynchronized();
            if (_state != DemoVmState.Off)
            {
                ResetTransportUnsynchronized();
            }

            _state = DemoVmState.Off;
        }

        _finished.TrySetResult();
    }

    private void ResetTransportUnsynchronized()
    {
        _pci?.Reset();
        _mmio?.Reset();
    }

    private void DisposeKernelUnsynchronized()
    {
        if (_kernel is GuestKernel kernel)
        {
            _interrupts += kernel.Cpu.InterruptsHandled;
            _kernel = null;
            _driver = null;
            kernel.Dispose();
        }
    }

    private void StartBootUnsynchronized()
    {
        _boot.Cancel();
        _boot.Dispose();
        _boot = new CancellationTokenSource();
        _nmi = false;
        _powerButton = false;
        _vcpuStallPanic = false;
        _uptime = Stopwatch.StartNew();
        int boot = ++_boots;
        CancellationToken token = _boot.Token;
        _script = Task.Factory.StartNew(() => RunBoot(boot, token), token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    // Firmware, enumeration and the watchdog driver's probe, on a fresh vCPU. Returns the boot reason the driver read.
    private WatchdogBootReason BootKernel(CancellationToken token)
    {
        GuestKernel kernel = GuestKernel.Boot(_machine, new GuestKernelOptions { HangTimeout = TimeSpan.FromSeconds(10) });
        lock (_lock)
        {
            if (token.IsCancellationRequested)
            {
                kernel.Dispose();
                token.ThrowIfCancellationRequested();
            }

            _kernel = kernel;
        }

        var options = new WatchdogDriverOptions { RingFeatures = VirtioFeatures.EventIndex | (Packed ? VirtioFeatures.RingPacked : 0) };
        WatchdogDriver driver = kernel.Run(() => WatchdogDriver.Probe(kernel.FindVirtioDevice(WatchdogDevice.VirtioDeviceId), options));
        driver.PretimeoutGovernor = notice => Kernel($"watchdog: watchdog0: pretimeout governor: {notice.TimeLeft.TotalMilliseconds:0} ms left — dumping state before the bite");
        driver.VcpuStallHandler = (notice, path) =>
        {
            Kernel($"virtio_wdt: VCPU_STALL notice: CPU {notice.Vcpu} ran {notice.StalledFor.TotalMilliseconds:0} ms without a pet (stage two in {notice.Stage2Left.TotalMilliseconds:0} ms)");
            if (path is { } reported)
            {
                Kernel($"Kernel panic - not syncing: {WatchdogDriver.VcpuStallMessage(notice)} (reported through {reported})");
                _vcpuStallPanic = true;
            }
        };
        lock (_lock)
        {
            _driver = token.IsCancellationRequested ? null : driver;
        }

        token.ThrowIfCancellationRequested();
        Kernel($"virtio_wdt: {kernel.FindVirtioDevice(WatchdogDevice.VirtioDeviceId).Location} over {TransportName}, {(Packed ? "packed" : "split")} rings, features {driver.Features}, timeout {driver.Timeout.TotalSeconds:0.0} s, boot reason {Name(driver.BootReason)}");
        if (driver.BootReason != WatchdogBootReason.None)
        {
            Kernel($"virtio_wdt: previous boot was ended by the host: {Name(driver.BootReason)}{(driver.BootStatusCardReset ? " (WDIOF_CARDRESET)" : string.Empty)}");
        }

        return driver.BootReason;
    }

    private void Kernel(string line) => HostLog.GuestKernel(_guestLog, _uptime.Elapsed.TotalSeconds, line);

    private static string Name(WatchdogBootReason reason) => reason switch
    {
        WatchdogBootReason.Watchdog => "WATCHDOG",
        WatchdogBootReason.Panic => "PANIC",
        WatchdogBootReason.Host => "HOST",
        _ => "NONE",
    };
}
