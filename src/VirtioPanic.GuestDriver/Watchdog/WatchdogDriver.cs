using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.GuestDriver.Watchdog;

// Design: the guest driver for the whole contract of spec/virtio-watchdog.md, shaped like a Linux
// driver under the watchdog core (drivers/watchdog/watchdog_dev.c) plus a panic notifier:
//
//   probe       read default_timeout_ms; read boot_reason before clearing it (only when offered);
//               accept offered features, never PRETIMEOUT without CONTROL or LOG_TAIL without EVENTS;
//               read the timeout bounds; set up watchdogq (+ eventq, + noticeq); post record
//               buffers (state != COMMITTED, status PENDING) and notice buffers; DRIVER_OK; with
//               CONTROL, GET_STATUS: a watchdog found ARMED is kept alive by the core's worker;
//               with VCPU_STALL the slot count and timeouts (per-CPU petting: WatchdogDriver.Vcpu.cs)
//   core ops    start/stop/ping/set_timeout/set_pretimeout/get_timeleft, nowayout, the
//               /dev/watchdog open/write/release protocol with magic close ('V'), and the core's
//               keepalive worker (every timeout/2) for a watchdog that runs with nobody holding it open
//   panic       interrupts off; fill the oldest free posted record, commit it last behind a
//               barrier, notify eventq unconditionally, poll its status a bounded number of times;
//               fall back to panic_events (read first, one supported bit) when not ACCEPTED
//
// Every member runs on the vCPU (guest code); the driver is single-threaded like the core's
// callbacks, which Linux serializes with wd_data->lock.

/// <summary>
/// The guest driver for the virtio watchdog and panic device (virtio ID 35) with every feature of
/// <c>spec/virtio-watchdog.md</c>: Linux watchdog-core semantics (start, stop, ping, timeout,
/// pretimeout, time left, nowayout, magic close, boot status) and a Linux-style panic notifier
/// (rich record, minimal path, crash-loaded, shutdown).
/// </summary>
/// <remarks>Guest code: create it with <see cref="Probe"/> and call every member on the vCPU (inside <see cref="GuestKernel.Run{T}"/>).</remarks>
public sealed partial class WatchdogDriver
{
    private readonly GuestVirtioDevice _device;
    private readonly GuestKernel _kernel;
    private readonly WatchdogDriverOptions _options;
    private readonly List<PretimeoutNotice> _notices = [];
    private ulong _request;
    private ulong _response;
    private ulong _heartbeat;
    private bool _active;
    private bool _hardwareRunning;
    private bool _open;
    private bool _allowRelease;
    private bool _broken;
    private ITimer? _keepalive;
    private TimeSpan _keepaliveInterval;
    private long _keepalives;
    private long _heartbeats;
    private long _heartbeatFaults;

    private WatchdogDriver(GuestVirtioDevice device, WatchdogDriverOptions options)
    {
        _device = device;
        _kernel = device.Kernel;
        _options = options;
    }

    /// <summary>The device.</summary>
    public GuestVirtioDevice Device => _device;

    /// <summary>The device features negotiated.</summary>
    public WatchdogFeatures Features { get; private set; }

    /// <summary>The device features offered.</summary>
    public WatchdogFeatures OfferedFeatures { get; private set; }

    /// <summary>Why the host last reset the VM, as read at probe (<see cref="WatchdogBootReason.None"/> when not offered).</summary>
    public WatchdogBootReason BootReason { get; private set; }

    /// <summary>Linux <c>WDIOF_CARDRESET</c> in <c>bootstatus</c>: the last reset was this watchdog's.</summary>
    public bool BootStatusCardReset => BootReason == WatchdogBootReason.Watchdog;

    /// <summary>The smallest timeout the driver may choose.</summary>
    public TimeSpan MinTimeout { get; private set; }

    /// <summary>The largest timeout the driver may choose.</summary>
    public TimeSpan MaxTimeout { get; private set; }

    /// <summary>The current timeout.</summary>
    public TimeSpan Timeout { get; private set; }

    /// <summary>The current pretimeout (zero for none).</summary>
    public TimeSpan Pretimeout { get; private set; }

    /// <summary>Whether the <c>nowayout</c> setting is in force.</summary>
    public bool Nowayout => _options.Nowayout;

    /// <summary>WDOG_ACTIVE: started and not stopped.</summary>
    public bool IsActive => _active;

    /// <summary>WDOG_HW_RUNNING: the device counts down while nobody drives it (found armed at probe, or not stoppable).</summary>
    public bool IsHardwareRunning => _hardwareRunning;

    /// <summary>Keepalives the core's worker sent on its own.</summary>
    public long WorkerKeepalives => Interlocked.Read(ref _keepalives);

    /// <summary>The worker's keepalive interval (zero while the worker is idle).</summary>
    public TimeSpan WorkerInterval => _keepaliveInterval;

    /// <summary>Heartbeats sent (baseline keepalives).</summary>
    public long Heartbeats => Interlocked.Read(ref _heartbeats);

    /// <summary>Heartbeats the device returned without the byte 1 (a device fault).</summary>
    public long HeartbeatFaults => Interlocked.Read(ref _heartbeatFaults);

    /// <summary>Pretimeout notices received, oldest first.</summary>
    public IReadOnlyList<PretimeoutNotice> PretimeoutNotices => _notices;

    /// <summary>The pretimeout governor: called (on the vCPU) for each notice.</summary>
    public Action<PretimeoutNotice>? PretimeoutGovernor { get; set; }

    /// <summary>Whether a crash kernel is loaded (<c>kexec_crash_loaded()</c>): panics are then reported as CRASH_LOADED.</summary>
    public bool CrashKernelLoaded { get; set; }

    // Every device-specific bit the driver knows: the 20-byte configuration's and VCPU_STALL.
    private const WatchdogFeatures KnownFeatures = WatchdogFeatures.All | WatchdogFeatures.VcpuStall;

    private GuestMemory Memory => _kernel.Memory;

    private bool HasControl => (Features & WatchdogFeatures.Control) != 0;

    /// <summary>Binds the driver to <paramref name="device"/>: the whole probe sequence of spec §5.</summary>
    /// <param name="device">A virtio device with ID 35.</param>
    /// <param name="options">Driver settings; defaults when null.</param>
    /// <returns>The driver.</returns>
    /// <exception cref="InvalidOperationException">The device is not a watchdog, or initialization failed.</exception>
    public static WatchdogDriver Probe(GuestVirtioDevice device, WatchdogDriverOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new WatchdogDriverOptions();
        if (device.DeviceId != WatchdogDevice.VirtioDeviceId)
        {
            throw new InvalidOperationException($"{device.Location} is not a watchdog (device ID {device.DeviceId}).");
        }

        if (options.RecordBuffers is < 1 or > WatchdogWire.MaxPostedRecords || options.NoticeBuffers < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "RecordBuffers must be 1 to 16 and NoticeBuffers at least 1.");
        }

        var driver = new WatchdogDriver(device, options);
        driver.Initialize();
        return driver;
    }

    /// <summary>Starts the watchdog (<c>ops->start</c>): START with the current timeout, or a first heartbeat without CONTROL; then SET_NOWAYOUT under <c>nowayout</c>.</summary>
    public WatchdogResult Start()
    {
        WatchdogResult result = HasControl ? Control(WatchdogWire.CommandStart, ToMilliseconds(Timeout), out _) : Heartbeat();
        if (result != WatchdogResult.Ok)
        {
            return result;
        }

        if (_options.Nowayout && HasControl)
        {
            result = Control(WatchdogWire.CommandSetNowayout, 0, out _);
        }

        _active = true;
        UpdateWorker();
        return result;
    }

    /// <summary>
    /// Stops the watchdog (<c>watchdog_stop</c>): Busy under <c>nowayout</c>; STOP with CONTROL;
    /// without it the device cannot stop, so it is marked running and the worker keeps it alive.
    /// </summary>
    public WatchdogResult Stop()
    {
        if (_options.Nowayout && (_active || _hardwareRunning))
        {
            return WatchdogResult.Busy;
        }

        WatchdogResult result = WatchdogResult.Ok;
        if (HasControl)
        {
            result = Control(WatchdogWire.CommandStop, 0, out _);
            if (result == WatchdogResult.Ok)
            {
                _hardwareRunning = false;
            }
        }
        else if (_active)
        {
            _hardwareRunning = true;
        }

        if (result == WatchdogResult.Ok)
        {
            _active = false;
        }

        UpdateWorker();
        return result;
    }

    /// <summary>Keeps the watchdog alive (<c>watchdog_ping</c>): KEEPALIVE with CONTROL, else a heartbeat; nothing when it is not running.</summary>
    public WatchdogResult Ping()
    {
        if (!_active && !_hardwareRunning)
        {
            return WatchdogResult.Ok;
        }

        return KeepAlive();
    }

    /// <summary>Sets the timeout (<c>WDIOC_SETTIMEOUT</c>): within [<see cref="MinTimeout"/>, <see cref="MaxTimeout"/>] and CONTROL only; a pretimeout not below it becomes zero.</summary>
    /// <param name="timeout">Whole milliseconds.</param>
    public WatchdogResult SetTimeout(TimeSpan timeout)
    {
        if (!HasControl)
        {
            return WatchdogResult.NotSupported;
        }

        if (timeout < MinTimeout || timeout > MaxTimeout)
        {
            return WatchdogResult.InvalidArgument;
        }

        WatchdogResult result = Control(WatchdogWire.CommandSetTimeout, ToMilliseconds(timeout), out WatchdogState state);
        if (result == WatchdogResult.Ok)
        {
            Timeout = state.Timeout;
            Pretimeout = state.Pretimeout;
            UpdateWorker();
        }

        return result;
    }

    /// <summary>Sets the pretimeout (<c>WDIOC_SETPRETIMEOUT</c>): needs PRETIMEOUT and a value below the timeout; zero disables it.</summary>
    /// <param name="pretimeout">Whole milliseconds.</param>
    public WatchdogResult SetPretimeout(TimeSpan pretimeout)
    {
        if ((Features & WatchdogFeatures.Pretimeout) == 0)
        {
            return WatchdogResult.NotSupported;
        }

        if (pretimeout < TimeSpan.Zero || (pretimeout != TimeSpan.Zero && pretimeout >= Timeout))
        {
            return WatchdogResult.InvalidArgument;
        }

        WatchdogResult result = Control(WatchdogWire.CommandSetPretimeout, ToMilliseconds(pretimeout), out WatchdogState state);
        if (result == WatchdogResult.Ok)
        {
            Pretimeout = state.Pretimeout;
        }

        return result;
    }

    /// <summary>The run time left before the watchdog bites (<c>ops->get_timeleft</c>), or null without CONTROL or on a device error.</summary>
    public TimeSpan? GetTimeLeft() => GetState()?.TimeLeft;

    /// <summary>The device's state (GET_STATUS), or null without CONTROL or on a device error.</summary>
    public WatchdogState? GetState() =>
        HasControl && Control(WatchdogWire.CommandGetStatus, 0, out WatchdogState state) == WatchdogResult.Ok ? state : null;

    /// <summary>Opens <c>/dev/watchdog</c>: starts the watchdog; Busy when already open.</summary>
    public WatchdogResult Open()
    {
        if (_open)
        {
            return WatchdogResult.Busy;
        }

        _open = true;
        _allowRelease = false;
        return Start();
    }

    /// <summary>
    /// Writes to <c>/dev/watchdog</c>: any write pings; a 'V' in the data arms the magic close
    /// (ignored under <c>nowayout</c>), and a later write without one disarms it again.
    /// </summary>
    /// <param name="data">The bytes written.</param>
    public WatchdogResult Write(ReadOnlySpan<byte> data)
    {
        if (!_options.Nowayout)
        {
            _allowRelease = data.Contains((byte)'V');
        }

        return Ping();
    }

    /// <summary>
    /// Closes <c>/dev/watchdog</c> (<c>watchdog_release</c>): stops the watchdog after a magic
    /// close; otherwise ("watchdog did not stop!") pings once and leaves it running, so it bites
    /// unless the device is opened and fed again.
    /// </summary>
    /// <returns>Ok when the watchdog stopped, Busy when it was left running.</returns>
    public WatchdogResult Release()
    {
        WatchdogResult result = WatchdogResult.Busy;
        if (!_active)
        {
            result = WatchdogResult.Ok;
        }
        else if (_allowRelease)
        {
            result = Stop();
        }

        if (result != WatchdogResult.Ok)
        {
            KeepAlive();
        }

        _allowRelease = false;
        _open = false;
        UpdateWorker();
        return result;
    }

    /// <summary>Unbinds the driver: stops the worker and resets the device (a NOWAYOUT watchdog keeps running across the reset).</summary>
    public void Remove()
    {
        _keepalive?.Dispose();
        _keepalive = null;
        _keepaliveInterval = TimeSpan.Zero;
        _device.Reset();
    }

    internal static uint ToMilliseconds(TimeSpan value) => (uint)Math.Clamp((long)Math.Round(value.TotalMilliseconds), 0, uint.MaxValue);

    private static TimeSpan Milliseconds(uint value) => TimeSpan.FromMilliseconds(value);

    private void Initialize()
    {
        if (_device.Begin() != VirtioInitResult.Ok)
        {
            throw new InvalidOperationException($"{_device.Location}: reset failed.");
        }

        // §5 step 1: the default timeout; step 2: the boot reason, read before it is cleared.
        uint defaultTimeout = _device.ReadConfigUInt32(WatchdogWire.ConfigDefaultTimeout);
        OfferedFeatures = (WatchdogFeatures)(_device.ReadDeviceFeatures() & (ulong)KnownFeatures);
        if ((OfferedFeatures & WatchdogFeatures.BootReason) != 0)
        {
            uint reason = _device.ReadConfigUInt32(WatchdogWire.ConfigBootReason);
            BootReason = reason <= (uint)WatchdogBootReason.Host ? (WatchdogBootReason)reason : WatchdogBootReason.None;
            if (reason != 0 && _options.ClearBootReason)
            {
                _device.WriteConfigUInt32(WatchdogWire.ConfigBootReason, 0);
            }
        }

        // Step 3: never a feature without its prerequisite (WDT-DRV-1).
        WatchdogFeatures wanted = _options.Features & OfferedFeatures;
        if ((wanted & WatchdogFeatures.Control) == 0)
        {
            wanted &= ~WatchdogFeatures.Pretimeout;
        }

        if ((wanted & WatchdogFeatures.Events) == 0)
        {
            wanted &= ~WatchdogFeatures.LogTail;
        }

        VirtioInitResult result = _device.NegotiateFeatures((ulong)wanted | (_options.RingFeatures & VirtioFeatures.RingFeatures));
        if (result != VirtioInitResult.Ok)
        {
            throw new InvalidOperationException($"{_device.Location}: feature negotiation failed ({result}).");
        }

        Features = (WatchdogFeatures)(_device.NegotiatedFeatures & (ulong)KnownFeatures);
        Timeout = Milliseconds(defaultTimeout);
        MinTimeout = HasControl ? Milliseconds(_device.ReadConfigUInt32(WatchdogWire.ConfigMinTimeout)) : Timeout;
        MaxTimeout = HasControl ? Milliseconds(_device.ReadConfigUInt32(WatchdogWire.ConfigMaxTimeout)) : Timeout;
        ReadVcpuConfig();

        // Step 4: the queues the features use.
        List<QueueSetup> queues = [new QueueSetup(WatchdogWire.WatchdogQueue, 16)];
        if ((Features & WatchdogFeatures.Events) != 0)
        {
            queues.Add(new QueueSetup(WatchdogWire.EventQueue, 32));
        }

        // noticeq: with PRETIMEOUT or VCPU_STALL (WDT-DRV-20).
        bool notices = (Features & (WatchdogFeatures.Pretimeout | WatchdogFeatures.VcpuStall)) != 0;
        if (notices)
        {
            queues.Add(new QueueSetup(WatchdogWire.NoticeQueue, 8));
        }

        result = _device.SetUpQueues(queues);
        if (result != VirtioInitResult.Ok)
        {
            throw new InvalidOperationException($"{_device.Location}: queue setup failed ({result}).");
        }

        _request = _kernel.AllocateBuffer(WatchdogWire.ControlSize);
        _response = _kernel.AllocateBuffer(WatchdogWire.ControlSize);
        _heartbeat = _kernel.AllocateBuffer(WatchdogWire.HeartbeatSize);

        // Step 5: buffers posted now, so a panic needs no allocation (published, not notified:
        // no notification before DRIVER_OK; the device looks at them when it goes live).
        if ((Features & WatchdogFeatures.Events) != 0)
        {
            PostRecordBuffers();
        }

        if (notices)
        {
            PostNoticeBuffers();
        }

        // Step 6.
        if (_device.SetDriverOk() != VirtioInitResult.Ok)
        {
            throw new InvalidOperationException($"{_device.Location}: the device refused DRIVER_OK.");
        }

        // WDT-DRV-16: a watchdog still armed from before the reset (NOWAYOUT) must be kept alive.
        if (HasControl && Control(WatchdogWire.CommandGetStatus, 0, out WatchdogState state) == WatchdogResult.Ok)
        {
            Timeout = state.Timeout;
            Pretimeout = state.Pretimeout;
            if ((state.Flags & WatchdogStateFlags.Armed) != 0)
            {
                _hardwareRunning = true;
                UpdateWorker();
            }
        }
    }

    private WatchdogResult KeepAlive() =>
        HasControl ? Control(WatchdogWire.CommandKeepalive, 0, out _) : Heartbeat();

    // The core's worker: keeps a running watchdog alive while nobody else does
    // (watchdog_need_worker: hardware running and not opened/started by user space).
    private void UpdateWorker()
    {
        bool needed = _hardwareRunning && !_active;
        TimeSpan interval = Timeout / 2;
        if (needed && _keepalive is not null && interval == _keepaliveInterval)
        {
            return;
        }

        _keepalive?.Dispose();
        _keepalive = null;
        _keepaliveInterval = TimeSpan.Zero;
        if (needed)
        {
            _keepaliveInterval = interval;
            _keepalive = _kernel.Cpu.StartTimer(WorkerTick, interval, interval);
        }
    }

    private void WorkerTick()
    {
        if (_keepalive is null)
        {
            return;
        }

        if (KeepAlive() == WatchdogResult.Ok)
        {
            Interlocked.Increment(ref _keepalives);
        }
    }
}
