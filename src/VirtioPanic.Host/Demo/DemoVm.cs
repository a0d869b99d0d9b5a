using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.Hosting;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Host.Demo;

// The demonstration VM: guest RAM, the watchdog device behind a transport, one vCPU thread running
// the demo guest, and the hypervisor side of IVmControl that the policy service calls.
internal sealed partial class DemoVm : IVmControl, IDisposable
{
    private const ulong RamBase = 0x4000_0000;
    private const ulong RamSize = 4 << 20;
    private const int MaxBoots = 6;

    private readonly Lock _lock = new();
    private readonly DemoSettings _settings;
    private readonly ILogger _log;
    private readonly ILogger _guestLog;
    private readonly GuestMemory _memory;
    private readonly GuestAllocator _allocator;
    private readonly DemoInterrupts _interrupts = new();
    private readonly GuestTransport _transport;
    private readonly ManualResetEventSlim _running = new(true);
    private readonly TaskCompletionSource _finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenSource _boot = new();
    private Task _vcpu = Task.CompletedTask;
    private DemoVmState _state = DemoVmState.Off;
    private int _boots;
    private volatile bool _nmi;
    private volatile bool _powerButton;

    internal DemoVm(DemoSettings settings, WatchdogDevice device, ILoggerFactory loggers)
    {
        _settings = settings;
        Device = device;
        _log = loggers.CreateLogger("VirtioPanic.Host.Demo.Vm");
        _guestLog = loggers.CreateLogger("guest");
        _memory = GuestMemory.CreateAnonymous(RamSize, RamBase);
        _allocator = new GuestAllocator(_memory, RamBase, RamSize);
        if (string.Equals(settings.Transport, "mmio", StringComparison.OrdinalIgnoreCase))
        {
            var mmio = new VirtioPanic.Transport.Mmio.VirtioMmioDevice(device, _memory, _interrupts, logger: loggers.CreateLogger("VirtioPanic.Transport.Mmio"));
            _transport = new MmioGuestTransport(mmio);
        }
        else
        {
            var pci = new VirtioPanic.Transport.Pci.VirtioPciFunction(device, _memory, _interrupts, logger: loggers.CreateLogger("VirtioPanic.Transport.Pci"));
            _transport = new PciGuestTransport(pci);
        }

        Guest = new DemoGuest(this, _transport, _memory, _allocator, _interrupts, _guestLog, packed: string.Equals(settings.Ring, "packed", StringComparison.OrdinalIgnoreCase));
    }

    internal WatchdogDevice Device { get; }

    internal DemoGuest Guest { get; }

    internal Task Finished => _finished.Task;

    internal int Boots => Volatile.Read(ref _boots);

    internal long Interrupts => _interrupts.Count;

    internal string TransportName => _transport.Name;

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

    internal VirtioPanicManager? Manager { get; set; }

    internal void PowerOn()
    {
        lock (_lock)
        {
            _state = DemoVmState.Running;
            StartBootUnsynchronized();
        }
    }

    // Stops the vCPU and powers the VM off (the end of the demo).
    internal void Stop() => Kill(DemoVmState.Off);

    // Called by the guest between steps: honours pause, kill, NMI and the power button.
    internal void Checkpoint(bool allowInterrupts = true)
    {
        _running.Wait(_boot.Token);
        _boot.Token.ThrowIfCancellationRequested();
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

    // Waits for run time to pass (paused time does not count), checking in between.
    internal void Run(TimeSpan duration, bool allowInterrupts = true, Action? poll = null)
    {
        TimeSpan left = duration;
        while (left > TimeSpan.Zero)
        {
            Checkpoint(allowInterrupts);
            TimeSpan step = left < TimeSpan.FromMilliseconds(20) ? left : TimeSpan.FromMilliseconds(20);
            _interrupts.Wait(step);
            poll?.Invoke();
            left -= step;
        }
    }

    // The guest powers itself off (ACPI S5).
    internal void GuestPowerOff()
    {
        HostLog.VmPoweredOff(_log, "guest shut down");
        lock (_lock)
        {
            _state = DemoVmState.Off;
            _transport.HostReset();
        }

        _finished.TrySetResult();
    }

    // The guest reboots itself (a triple fault, reboot(2), panic=N): the platform resets.
    internal void GuestReboot()
    {
        HostLog.GuestRebooted(_log);
        lock (_lock)
        {
            _transport.HostReset();
            Device.OnVmReset(WatchdogBootReason.None);
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

    public async ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken)
    {
        await StopVcpuAsync().ConfigureAwait(false);
        if (Boots >= MaxBoots)
        {
            return VmControlResult.Failure($"the demo VM has already booted {MaxBoots} times");
        }

        HostLog.VmReset(_log, context.PolicyAction);
        lock (_lock)
        {

            // A platform reset: the transport returns to power-on state (resetting the device), and
            // the device learns the VM reset (it keeps the boot reason the policy service set).
            _transport.HostReset();
            Device.OnVmReset(context.BootReason);
            _state = DemoVmState.Running;
            _running.Set();
            StartBootUnsynchronized();
        }

        return VmControlResult.Success;
    }

    public async ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken)
    {
        await StopVcpuAsync().ConfigureAwait(false);
        Kill(DemoVmState.Off);
        HostLog.VmPoweredOff(_log, context.PolicyAction);
        return VmControlResult.Success;
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
        // A flat image of guest RAM (the vCPU keeps running, as libvirt's watchdog 'dump' does after it).
        byte[] chunk = new byte[64 * 1024];
        await using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 0, useAsync: true);
        for (ulong offset = 0; offset < RamSize; offset += (ulong)chunk.Length)
        {
            if (!_memory.TryRead(RamBase + offset, chunk))
            {
                return VmControlResult.Failure($"guest memory at 0x{RamBase + offset:x} is not readable");
            }

            await file.WriteAsync(chunk, cancellationToken).ConfigureAwait(false);
        }

        HostLog.VmDumped(_log, path, RamSize);
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
        _memory.Dispose();
        _running.Dispose();
        _interrupts.Dispose();
        _boot.Dispose();
    }

    private void Kill(DemoVmState state)
    {
        lock (_lock)
        {
            _boot.Cancel();
            _running.Set();
            if (_state != DemoVmState.Off)
            {
                _transport.HostReset();
            }

            _state = state;
        }

        _finished.TrySetResult();
    }

    private async Task StopVcpuAsync()
    {
        Task vcpu;
        lock (_lock)
        {
            _boot.Cancel();
            _running.Set();
            vcpu = _vcpu;
        }

        await Task.WhenAny(vcpu, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
    }

    private void StartBootUnsynchronized()
    {
        _boot.Cancel();
        _boot.Dispose();
        _boot = new CancellationTokenSource();
        _nmi = false;
        _powerButton = false;
        int boot = ++_boots;
        CancellationToken token = _boot.Token;
        _vcpu = Task.Factory.StartNew(() => RunBoot(boot, token), token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }
}
