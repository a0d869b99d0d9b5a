using System.Buffers.Binary;
using System.Threading.Channels;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging;
using VirtioPanic.Device.Events;
using VirtioPanic.Device.Protocol;
using VirtioPanic.Device.Queues;
using VirtioPanic.Device.Timer;
using VirtioPanic.RateLimiting;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Device;

/// <summary>
/// The virtio watchdog and panic device (virtio device ID 35), as specified in
/// <c>spec/virtio-watchdog.md</c>: a Cloud Hypervisor-compatible heartbeat watchdog extended with
/// guest-chosen timeouts, pretimeout notices, rich panic records, a minimal panic path usable from
/// any context, and a boot reason. Plug it into a virtio transport through <see cref="IVirtioDevice"/>;
/// consume what it reports from <see cref="Events"/>.
/// </summary>
/// <remarks>
/// <para>Watchdog time is VM run time on the injected <see cref="TimeProvider"/>: call
/// <see cref="Pause"/> and <see cref="Resume"/> when the VM stops and runs again. A paused VM never
/// expires, and after a resume or <see cref="RestoreState"/> the guest always gets
/// <see cref="WatchdogDeviceOptions.ResumeGrace"/> of run time.</para>
/// <para>Threading: notifications may arrive concurrently from any vCPU thread; each queue has a
/// single consumer and takes no lock on the ring path. Host calls are thread-safe.
/// <see cref="SaveState"/> and <see cref="RestoreState"/> expect the VM's vCPUs to be stopped.</para>
/// </remarks>
public sealed partial class WatchdogDevice : IVirtioDevice, IDisposable
{
    /// <summary>The virtio device ID of the watchdog device (virtio 1.2 §5).</summary>
    public const uint VirtioDeviceId = 35;

    private readonly Lock _lock = new();
    private readonly WatchdogFeatures _offered;
    private readonly IVcpuRunClock? _vcpuClock;
    private readonly NoticeOrder _noticeOrder = new();

    // Per-vCPU stall detection (spec §6.12); null when VCPU_STALL is not offered.
    private readonly VcpuStallMonitor? _vcpus;
    private readonly uint _defaultTimeoutMs;
    private readonly uint _minTimeoutMs;
    private readonly uint _maxTimeoutMs;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    // Guest-triggerable lines (warnings, reports, state changes): at most 10 a minute each.
    private const int GuestLineBurst = 10;
    private static readonly TimeSpan s_guestLineWindow = TimeSpan.FromMinutes(1);

    private readonly LogRateLimiter _warnings;
    private readonly LogRateLimiter _reportLogs;
    private readonly LogRateLimiter _stateLogs;
    private readonly LogRateLimiter _stallLogs;
    private readonly WatchdogTimer _timer;
    private readonly WatchdogEventSink _sink;
    private readonly WatchdogQueueWorker _watchdogWorker;
    private readonly EventQueueWorker _eventWorker;
    private readonly NoticeQueueWorker _noticeWorker;

    // Session state (guarded by _lock for writes; read lock-free where noted).
    private IVirtioDeviceContext? _context;
    private WatchdogFeatures _negotiated;
    private HeldRecordState[]? _restoredHeld;
    private int _needsReset;

    // Run state (guarded by _lock; see WatchdogDevice.Suspend.cs). The watchdog's clock runs only
    // while neither is set: _hostPaused by Pause/Resume (the VM's run state, from the host),
    // _suspended by Suspend/TryResume/Reset (the transport stopped the rings).
    private bool _hostPaused;
    private bool _suspended;
    private int _bootReason;

    // What the last configuration read presented for the two fields a driver writes, as later
    // whole-image writes changed them: the copy a front end that forwards the whole image
    // (QEMU's generic vhost-user device) writes back. See WriteConfigFields.
    private int _presentedBootReason;
    private int _presentedPanicEvents;
    private int _presentedVcpuHeartbeat;
    private long _protocolErrors;
    private long _faults;       // unexpected exceptions caught in workers and the timer; Interlocked only (the first increment logs), orders nothing else
    private bool _disposed;
    private readonly KeyValuePair<string, object?> _metricTag;   // the device tag of every measurement (WatchdogDeviceMetrics)

    /// <summary>Creates a device.</summary>
    /// <param name="options">Host settings; validated here.</param>
    /// <param name="timeProvider">Clock and timers; <see cref="TimeProvider.System"/> when null.</param>
    /// <param name="logger">Where the device logs; nothing when null.</param>
    /// <param name="vcpuClock">Each vCPU's run time, for per-vCPU stall detection (<see cref="WatchdogDeviceOptions.VcpuCount"/>);
    /// when null, every vCPU's run time is the VM's run time (spec §6.12, WDT-DEV-49).</param>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public WatchdogDevice(WatchdogDeviceOptions options, TimeProvider? timeProvider = null, ILogger? logger = null, IVcpuRunClock? vcpuClock = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Id = options.DeviceId;
        _metricTag = WatchdogDeviceMetrics.DeviceTag(Id);

        // VCPU_STALL is offered exactly with a vCPU count (WDT-DEV-40); without it the configuration stays 20 bytes.
        _offered = (options.Features & WatchdogFeatures.All) | (options.VcpuCount > 0 ? WatchdogFeatures.VcpuStall : WatchdogFeatures.None);
        _vcpuClock = vcpuClock;
        _defaultTimeoutMs = WatchdogTimer.ToMilliseconds(options.DefaultTimeout);
        _minTimeoutMs = WatchdogTimer.ToMilliseconds(options.MinTimeout);
        _maxTimeoutMs = WatchdogTimer.ToMilliseconds(options.MaxTimeout);
        _time = timeProvider ?? TimeProvider.System;
        _logger = logger ?? NullLogger.Instance;
        _warnings = new LogRateLimiter(_time, GuestLineBurst, s_guestLineWindow);
        _reportLogs = new LogRateLimiter(_time, GuestLineBurst, s_guestLineWindow);
        _stateLogs = new LogRateLimiter(_time, GuestLineBurst, s_guestLineWindow);
        _stallLogs = new LogRateLimiter(_time, GuestLineBurst, s_guestLineWindow);
        _sink = new WatchdogEventSink(options.EventCapacity);
        var listener = new TimerListener(this);
        _timer = new WatchdogTimer(_time, options, listener, _noticeOrder);
        if ((_offered & WatchdogFeatures.VcpuStall) != 0)
        {
            _vcpus = new VcpuStallMonitor(_timer, vcpuClock, options.VcpuCount, options.VcpuStallTimeout, options.VcpuStallSecondStage,
                options.ResumeGrace, _time, _noticeOrder, listener);
        }

        var host = new QueueHost(this);
        _watchdogWorker = new WatchdogQueueWorker(host, _timer);
        _eventWorker = new EventQueueWorker(host);
        _noticeWorker = new NoticeQueueWorker(host, _timer, _vcpus);
    }

    /// <summary>The instance identifier every event carries (<see cref="WatchdogDeviceOptions.DeviceId"/>).</summary>
    public string Id { get; }

    /// <summary>
    /// What the device reports, in order of occurrence. Bounded: see <see cref="WatchdogEvent"/> for
    /// what happens when the host does not keep up. Completed when the device is disposed.
    /// </summary>
    public ChannelReader<WatchdogEvent> Events => _sink.Reader;

    /// <summary>The device-specific features offered.</summary>
    public WatchdogFeatures OfferedFeatures => _offered;

    uint IVirtioDevice.DeviceId => VirtioDeviceId;

    /// <inheritdoc />
    public ulong DeviceFeatures => (ulong)_offered | VirtioFeatures.RingFeatures;

    /// <inheritdoc />
    public int QueueCount => WatchdogProtocol.QueueCount;

    /// <inheritdoc />
    public int ConfigSize => (_offered & WatchdogFeatures.VcpuStall) != 0 ? WatchdogConfig.VcpuStallSize : WatchdogConfig.Size;

    internal WatchdogTimer Timer => _timer;

    internal VcpuStallMonitor? VcpuMonitor => _vcpus;

    internal WatchdogFeatures NegotiatedDeviceFeatures => _negotiated;

    internal int HeldRecordCount => _eventWorker.HeldCount;

    /// <inheritdoc />
    public ushort GetMaxQueueSize(int queueIndex) => queueIndex switch
    {
        WatchdogProtocol.WatchdogQueue => WatchdogProtocol.WatchdogQueueMaxSize,
        WatchdogProtocol.EventQueue => WatchdogProtocol.EventQueueMaxSize,
        WatchdogProtocol.NoticeQueue => WatchdogProtocol.NoticeQueueMaxSize,
        _ => throw new ArgumentOutOfRangeException(nameof(queueIndex)),
    };

    /// <inheritdoc />
    public void ReadConfig(uint offset, Span<byte> data)
    {
        Span<byte> image = stackalloc byte[WatchdogConfig.VcpuStallSize];
        image = image[..ConfigSize];
        FillConfigImage(image);
        Volatile.Write(ref _presentedBootReason, BinaryPrimitives.ReadInt32LittleEndian(image[(int)WatchdogConfig.BootReason..]));
        Volatile.Write(ref _presentedPanicEvents, BinaryPrimitives.ReadInt32LittleEndian(image[(int)WatchdogConfig.PanicEvents..]));
        Volatile.Write(ref _presentedVcpuHeartbeat, 0);

        // The transport guarantees the range; stay defensive anyway and fill every byte.
        data.Clear();
        if (offset < (uint)image.Length)
        {
            ReadOnlySpan<byte> source = image[(int)offset..];
            source[..Math.Min(source.Length, data.Length)].CopyTo(data);
        }
    }

    private void FillConfigImage(Span<byte> image)
    {
        bool control = (_offered & WatchdogFeatures.Control) != 0;
        uint bootReason = (_offered & WatchdogFeatures.BootReason) != 0 ? (uint)Volatile.Read(ref _bootReason) : 0;
        BinaryPrimitives.WriteUInt32LittleEndian(image[(int)WatchdogConfig.BootReason..], bootReason);
        BinaryPrimitives.WriteUInt32LittleEndian(image[(int)WatchdogConfig.DefaultTimeoutMs..], _defaultTimeoutMs);
        BinaryPrimitives.WriteUInt32LittleEndian(image[(int)WatchdogConfig.PanicEvents..], (_offered & WatchdogFeatures.PanicConfig) != 0 ? WatchdogConfig.SupportedPanicEvents : 0);
        BinaryPrimitives.WriteUInt32LittleEndian(image[(int)WatchdogConfig.MinTimeoutMs..], control ? _minTimeoutMs : _defaultTimeoutMs);
        BinaryPrimitives.WriteUInt32LittleEndian(image[(int)WatchdogConfig.MaxTimeoutMs..], control ? _maxTimeoutMs : _defaultTimeoutMs);
        if (_vcpus is not null && image.Length >= WatchdogConfig.VcpuStallSize)
        {
            // WDT-DEV-40: constant fields; vcpu_heartbeat reads 0.
            BinaryPrimitives.WriteUInt32LittleEndian(image[(int)WatchdogConfig.VcpuCount..], (uint)_vcpus.Count);
            BinaryPrimitives.WriteUInt32LittleEndian(image[(int)WatchdogConfig.VcpuTimeoutMs..], WatchdogTimer.ToMilliseconds(_vcpus.Timeout));
            BinaryPrimitives.WriteUInt32LittleEndian(image[(int)WatchdogConfig.VcpuStage2Ms..], WatchdogTimer.ToMilliseconds(_vcpus.SecondStage));
            BinaryPrimitives.WriteUInt32LittleEndian(image[(int)WatchdogConfig.VcpuHeartbeat..], 0);
        }
    }

    /// <inheritdoc />
    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        uint size = (uint)ConfigSize;
        if (!data.IsEmpty && offset < size && data.Length <= size - offset
            && offset / WatchdogConfig.FieldSize != (offset + (uint)data.Length - 1) / WatchdogConfig.FieldSize)
        {
            WriteConfigFields(offset, data);
            return;
        }

        if (_vcpus is not null && offset >= WatchdogConfig.VcpuHeartbeat && offset < WatchdogConfig.VcpuHeartbeat + WatchdogConfig.FieldSize)
        {
            if (offset == WatchdogConfig.VcpuHeartbeat && data.Length == sizeof(uint))
            {
                VcpuHeartbeat(BinaryPrimitives.ReadUInt32LittleEndian(data));
            }
            else
            {
                // WDT-DEV-42: only one 4-byte write is a command.
                ReportProtocolError(-1, WatchdogProtocolError.InvalidVcpuHeartbeat, "vcpu_heartbeat write not 4 bytes wide at 0x20");
            }

            return;
        }

        if (offset == WatchdogConfig.PanicEvents && data.Length is 1 or 2 or 4 && (_offered & WatchdogFeatures.PanicConfig) != 0)
        {
            Span<byte> value = stackalloc byte[sizeof(uint)];
            value.Clear();
            data.CopyTo(value);
            ReportPanicEvents(BinaryPrimitives.ReadUInt32LittleEndian(value));
            return;
        }

        if (offset == WatchdogConfig.BootReason && (_offered & WatchdogFeatures.BootReason) != 0 && !data.IsEmpty && !data.ContainsAnyExcept((byte)0))
        {
            // WDT-DEV-29: the driver acknowledges the boot reason.
            Volatile.Write(ref _bootReason, (int)WatchdogBootReason.None);
            return;
        }

        // WDT-DEV-3: writes to read-only fields (or odd widths) are ignored.
        ReportProtocolError(-1, WatchdogProtocolError.InvalidConfigWrite, "ignored configuration write");
    }

    // WDT-DEV-38 (spec §4.1): a write that covers more than one field, as QEMU's generic vhost-user
    // device sends for every driver write (offset 0, all 20 bytes: what its last read returned,
    // with the field the driver wrote replaced). Each field is taken on its own; a field whose
    // bytes are what a read returns now, or what the last read returned as later whole-image
    // writes changed it, was not written: it reports nothing, clears nothing and is no error.
    private void WriteConfigFields(uint offset, ReadOnlySpan<byte> data)
    {
        Span<byte> image = stackalloc byte[WatchdogConfig.VcpuStallSize];
        image = image[..ConfigSize];
        FillConfigImage(image);
        bool ignored = false;
        uint end = offset + (uint)data.Length;
        for (uint field = offset / WatchdogConfig.FieldSize * WatchdogConfig.FieldSize; field < end; field += WatchdogConfig.FieldSize)
        {
            uint from = Math.Max(offset, field);
            uint to = Math.Min(end, field + WatchdogConfig.FieldSize);
            ReadOnlySpan<byte> written = data[(int)(from - offset)..(int)(to - offset)];
            if (written.SequenceEqual(image[(int)from..(int)to]))
            {
                continue;
            }

            bool whole = to - from == WatchdogConfig.FieldSize;
            int value = whole ? BinaryPrimitives.ReadInt32LittleEndian(written) : 0;
            if (whole && field == WatchdogConfig.PanicEvents && (_offered & WatchdogFeatures.PanicConfig) != 0)
            {
                if (value != Volatile.Read(ref _presentedPanicEvents))
                {
                    ReportPanicEvents((uint)value);
                    Volatile.Write(ref _presentedPanicEvents, value);
                }
            }
            else if (whole && field == WatchdogConfig.VcpuHeartbeat && _vcpus is not null)
            {
                // §4.1: a value equal to the front end's copy was not written (hence the sequence bits).
                if (value != Volatile.Read(ref _presentedVcpuHeartbeat))
                {
                    Volatile.Write(ref _presentedVcpuHeartbeat, value);
                    VcpuHeartbeat((uint)value);
                }
            }
            else if (!whole && field == WatchdogConfig.VcpuHeartbeat && _vcpus is not null)
            {
                ReportProtocolError(-1, WatchdogProtocolError.InvalidVcpuHeartbeat, "vcpu_heartbeat written in part inside a multi-field write");
            }
            else if (whole && field == WatchdogConfig.BootReason && (_offered & WatchdogFeatures.BootReason) != 0)
            {
                int presented = Volatile.Read(ref _presentedBootReason);
                if (value == 0 && presented != 0)
                {
                    // WDT-DEV-29: the driver acknowledges the boot reason it read.
                    Volatile.Write(ref _bootReason, (int)WatchdogBootReason.None);
                    Volatile.Write(ref _presentedBootReason, 0);
                }
                else if (value != presented)
                {
                    ignored = true;
                }
            }
            else
            {
                ignored = true;
            }
        }

        if (ignored)
        {
            // WDT-DEV-3: the parts that would change a read-only field (or write a field in part) are ignored.
            ReportProtocolError(-1, WatchdogProtocolError.InvalidConfigWrite, "ignored part of a multi-field configuration write");
        }
    }

    // One vcpu_heartbeat command (spec §6.12): O(1), no timer work for a pet of a tracked vCPU.
    private void VcpuHeartbeat(uint value)
    {
        VcpuStallMonitor vcpus = _vcpus!;
        uint index = value & WatchdogConfig.HeartbeatIndexMask;
        if ((_negotiated & WatchdogFeatures.VcpuStall) == 0)
        {
            // WDT-DRV-18: only with the feature negotiated (after DRIVER_OK); nothing is tracked before.
            ReportProtocolError(-1, WatchdogProtocolError.InvalidVcpuHeartbeat, "vcpu_heartbeat written without VCPU_STALL negotiated");
            return;
        }

        if (index >= (uint)vcpus.Count)
        {
            // WDT-DEV-42: a hostile index changes nothing.
            ReportProtocolError(-1, WatchdogProtocolError.InvalidVcpuHeartbeat, "vcpu_heartbeat index at or above vcpu_count");
            return;
        }

        if ((value & WatchdogConfig.HeartbeatOffline) != 0)
        {
            vcpus.Offline((int)index);
        }
        else
        {
            vcpus.Pet((int)index);
        }
    }

    /// <inheritdoc />
    public bool AcceptFeatures(ulong features)
    {
        // WDT-DEV-2: no feature without its prerequisite.
        var device = (WatchdogFeatures)(features & (ulong)WatchdogDeviceOptions.KnownFeatures);
        if ((device & WatchdogFeatures.Pretimeout) != 0 && (device & WatchdogFeatures.Control) == 0)
        {
            return false;
        }

        if ((device & WatchdogFeatures.LogTail) != 0 && (device & WatchdogFeatures.Events) == 0)
        {
            return false;
        }

        return (device & ~_offered) == 0;
    }

    /// <inheritdoc />
    public void Activate(IVirtioDeviceContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (IsSuspended)
        {
            // A transport that activates instead of resuming a kept session: the session is over.
            Reset();
        }

        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _context = context;
            _negotiated = (WatchdogFeatures)(context.NegotiatedFeatures & (ulong)_offered);
            Volatile.Write(ref _needsReset, 0);
            StartWorkerUnsynchronized(WatchdogProtocol.WatchdogQueue);
            StartWorkerUnsynchronized(WatchdogProtocol.EventQueue);
            StartWorkerUnsynchronized(WatchdogProtocol.NoticeQueue);
            _restoredHeld = null;
        }

        WatchdogDeviceLog.Activated(_logger, Id, _negotiated);

        // Buffers the driver made available before DRIVER_OK are processed now.
        _watchdogWorker.Kick();
        _eventWorker.Kick();
        _noticeWorker.Kick();
    }

    /// <inheritdoc />
    public void ResetQueue(int queueIndex)
    {
        QueueWorker? worker = Worker(queueIndex);
        if (worker is null)
        {
            return;
        }

        lock (_lock)
        {
            worker.Stop();
            if (queueIndex == WatchdogProtocol.EventQueue)
            {
                DrainHeldRecordsUnsynchronized();
            }
        }
    }

    /// <inheritdoc />
    public void Reset()
    {
        bool wasBound;
        bool keptRunning;
        lock (_lock)
        {
            wasBound = _context is not null || _suspended;
            _watchdogWorker.Stop();
            _eventWorker.Stop();
            _noticeWorker.Stop();

            // WDT-DEV-30: committed records whose notification never came still reach the host.
            DrainHeldRecordsUnsynchronized();
            keptRunning = _timer.Reset(vmReset: false);
            _vcpus?.UntrackAll();   // WDT-DEV-47
            _context = null;
            _negotiated = WatchdogFeatures.None;
            _restoredHeld = null;
            Volatile.Write(ref _needsReset, 0);
            EndSuspensionUnsynchronized();
        }

        if (wasBound)
        {
            if (_stateLogs.TryAcquire(out _))
            {
                WatchdogDeviceLog.DriverReset(_logger, Id, keptRunning);
            }

            Publish(new DriverResetEvent
            {
                DeviceId = Id,
                Sequence = _sink.NextSequence(),
                VmRunTime = _timer.RunTime,
                HostTime = _time.GetUtcNow(),
                WatchdogKeptRunning = keptRunning,
            });
        }
    }

    /// <summary>
    /// The transport is being restored from a snapshot: stops processing and forgets the driver
    /// session, but keeps the watchdog, sequence numbers and held records as they are and publishes
    /// nothing; <see cref="RestoreState"/> (called after the transport's restore) then sets them
    /// from the device snapshot.
    /// </summary>
    public void Quiesce()
    {
        lock (_lock)
        {
            _watchdogWorker.Stop();
            _eventWorker.Stop();
            _noticeWorker.Stop();
            _context = null;
            _negotiated = WatchdogFeatures.None;
            Volatile.Write(ref _needsReset, 0);
            EndSuspensionUnsynchronized();
        }
    }

    /// <summary>The VM stopped running (paused, stopped, being saved): the watchdog's run-time clock stops.</summary>
    public void Pause()
    {
        lock (_lock)
        {
            _hostPaused = true;
            _timer.Pause();
        }
    }

    /// <summary>
    /// The VM runs again: the clock resumes and the guest gets at least the resume grace before an
    /// expiry. While the transport keeps the device suspended (<see cref="Suspend"/>) the clock
    /// stays stopped until the rings restart.
    /// </summary>
    public void Resume()
    {
        lock (_lock)
        {
            _hostPaused = false;
            if (!_suspended)
            {
                bool wasPaused = _timer.GetStatus().Paused;
                _timer.Resume();
                if (wasPaused)
                {
                    _vcpus?.OnResumed();
                }
            }
        }
    }

    /// <summary>
    /// Sets what the guest reads from <c>boot_reason</c> (when VIRTIO_WDT_F_BOOT_REASON is offered).
    /// Call it before resetting the VM; the value survives device resets.
    /// </summary>
    /// <param name="reason">Why the host is resetting the VM.</param>
    public void SetBootReason(WatchdogBootReason reason)
    {
        IVirtioDeviceContext? context;
        lock (_lock)
        {
            int previous = Interlocked.Exchange(ref _bootReason, (int)reason);
            context = previous != (int)reason && (_offered & WatchdogFeatures.BootReason) != 0 ? _context : null;
        }

        context?.SignalConfigChange();
    }

    /// <summary>
    /// The host is resetting the whole VM: sets the boot reason for the next boot and returns the
    /// watchdog to its power-on state, stopping it even when the guest set NOWAYOUT. The transport
    /// resets the device's queues separately.
    /// </summary>
    /// <param name="reason">Why the host resets the VM.</param>
    public void OnVmReset(WatchdogBootReason reason)
    {
        SetBootReason(reason);
        _timer.Reset(vmReset: true);
        _vcpus?.UntrackAll();
    }

    /// <summary>The device's state for the host's management query.</summary>
    public WatchdogDeviceStatus GetStatus()
    {
        WatchdogTimerStatus timer = _timer.GetStatus();
        (int Tracked, int Stalled) vcpuCounts = _vcpus?.Counts() ?? (0, 0);
        bool disposed;
        bool bound;
        WatchdogFeatures negotiated;
        lock (_lock)
        {
            disposed = _disposed;
            bound = _context is not null;
            negotiated = _negotiated;
        }

        return new WatchdogDeviceStatus
        {
            DeviceId = Id,
            IsPresent = !disposed,
            DriverBound = bound,
            OfferedFeatures = _offered,
            NegotiatedFeatures = negotiated,
            Armed = timer.Armed,
            Nowayout = timer.Nowayout,
            Expired = timer.Expired,
            Paused = timer.Paused,
            Suspended = IsSuspended,
            NeedsReset = Volatile.Read(ref _needsReset) != 0,
            Timeout = timer.Timeout,
            Pretimeout = timer.Pretimeout,
            TimeLeft = timer.TimeLeft,
            VmRunTime = timer.RunTime,
            BootReason = (WatchdogBootReason)Volatile.Read(ref _bootReason),
            LastEvent = _sink.LastEvent,
            ProtocolErrors = Interlocked.Read(ref _protocolErrors),
            DroppedEvents = _sink.Dropped,
            CoalescedEvents = _sink.Coalesced,
            PendingEvents = _sink.Pending,
            VcpuCount = _vcpus?.Count ?? 0,
            TrackedVcpus = vcpuCounts.Tracked,
            StalledVcpus = vcpuCounts.Stalled,
            VcpuClock = _vcpus is null ? VcpuClockSource.NotOffered : _vcpus.HasVcpuClock ? VcpuClockSource.VcpuRunTime : VcpuClockSource.VmRunTime,
        };
    }

    /// <summary>Takes the watchdog out of the shared timer and completes <see cref="Events"/>. Reset the device first if a driver is bound.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            Volatile.Write(ref _inlineObserver, null);
            _watchdogWorker.Stop();
            _eventWorker.Stop();
            _noticeWorker.Stop();
        }

        _timer.Dispose();
        _vcpus?.Dispose();
        _sink.Complete();
    }

    // The reset's last look at the held records (WDT-DEV-30), with the event worker stopped. It
    // runs on the thread resetting the device (a vCPU's status write): an unexpected exception is
    // logged once and the held buffers are forgotten anyway, so the reset always completes.
    private void DrainHeldRecordsUnsynchronized()
    {
#pragma warning disable CA1031 // any exception: the reset must complete
        try
        {
            _eventWorker.DrainAtReset();
        }
        catch (Exception ex)
        {
            _eventWorker.ClearHeld();
            LogFault(WatchdogProtocol.EventQueue, ex);
        }
#pragma warning restore CA1031
    }
}
