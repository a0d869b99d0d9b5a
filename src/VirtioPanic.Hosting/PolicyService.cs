using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Journal;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Hosting;

/// <summary>
/// The policy service's management API: attach the hypervisor's watchdog devices with their VM
/// controls, query the state (typed or as JSON), change policies at run time, and continue a guest
/// the policy preserved. Registered as a singleton by <see cref="VirtioPanicServiceCollectionExtensions.AddVirtioPanic"/>;
/// the hosted service that comes with it consumes the devices' events.
/// </summary>
/// <remarks>
/// <para>Every device event is handled in order, one at a time per device: the policy decides (a
/// pure function of the policy, what happened before and the event), the decision is appended to
/// the journal, the VM-control calls are made (with fallbacks), and the outcome is journaled before
/// the event counts as handled and <see cref="EventHandled"/> is raised. While the service runs, a
/// guest report is also journaled when the device accepts it, before the guest learns it was
/// accepted, so a restart reports any report that was never acted on. Devices attached before the
/// service starts keep their events in their own channels until it does; on stop every event still
/// queued is handled before the service returns.</para>
/// </remarks>
public sealed partial class PolicyService : IDisposable
{
    // The parts: DevicePump (per device: event order, the inline path), the handling pipeline
    // (PolicyService.Handling.cs: decide, journal, act, journal the outcome, report), ActionRunner
    // (VM-control calls in flight, timeouts, fallbacks, dumps), PolicyJournal (the journal's side),
    // EventLogLimiter (per-event log lines); PolicyService.Status.cs is the management query.
    private readonly ConcurrentDictionary<string, DeviceEntry> _devices = new(StringComparer.Ordinal);
    private readonly Lock _lifecycle = new();
    private readonly VirtioPanicOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly VirtioPanicMetrics _metrics;
    private readonly EventLogLimiter _logs;
    private readonly PolicyJournal _journal;
    private readonly ActionRunner _actions;
    private ITimer? _sweeper;
    private JournalRecoveryReport? _recovery;
    private bool _running;

    internal PolicyService(IOptions<VirtioPanicOptions> options, TimeProvider time, ILogger<PolicyService>? logger, IMeterFactory? meterFactory)
    {
        _options = options.Value;
        _time = time;
        _logger = logger ?? (ILogger)NullLogger.Instance;
        // The gauge is read only after construction, when _journal is set.
        _metrics = new VirtioPanicMetrics(meterFactory, () => _journal!.Error is not null, () => _devices.Values.Select(static e => e.Device));
        _logs = new EventLogLimiter(_logger, time, _metrics);
        _journal = new PolicyJournal(_options, time, _logger, _metrics);
        _actions = new ActionRunner(_options, time, _logger, _metrics, _logs);
    }

    /// <summary>Raised after each event, deadline or management request has been handled and journaled. Handlers run on the service's thread (or, with <see cref="VirtioPanicOptions.InlinePanicHandling"/>, on the vCPU thread that reported a panic): keep them short.</summary>
    public event EventHandler<HandledEvent>? EventHandled;

    /// <summary>What the journal held at start (events never acted on, a torn last line); null until the service has started.</summary>
    public JournalRecoveryReport? Recovery => Volatile.Read(ref _recovery);

    // The open journal (null before start, after stop, or when it could not be opened); for the benchmarks' commit counts.
    internal EventJournal? Journal => _journal.Current;

    /// <summary>The options in force.</summary>
    public VirtioPanicOptions Options => _options;

    /// <summary>Whether the service is running.</summary>
    public bool IsRunning
    {
        get
        {
            lock (_lifecycle)
            {
                return _running;
            }
        }
    }

    /// <summary>
    /// Puts a device under policy: its events are handled from now on (or from when the service
    /// starts), acting on the VM through <paramref name="vm"/>.
    /// </summary>
    /// <param name="device">The device; its <see cref="WatchdogDevice.Id"/> must be unique among attached devices. The service becomes its only event reader.</param>
    /// <param name="vm">How to act on the VM the device belongs to.</param>
    /// <param name="policy">The device's policy; when null, its entry in <see cref="VirtioPanicOptions.Devices"/>, else <see cref="VirtioPanicOptions.Policy"/>.</param>
    /// <exception cref="InvalidOperationException">A device with the same id is attached.</exception>
    /// <exception cref="ArgumentException"><paramref name="policy"/> is invalid.</exception>
    public void Attach(WatchdogDevice device, IVmControl vm, DevicePolicy? policy = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(vm);
        if (policy is not null)
        {
            ThrowIfInvalid(policy, nameof(policy));
        }

        var entry = new DeviceEntry(device, vm, policy ?? _options.PolicyFor(device.Id), _logs.ForDevice());
        lock (_lifecycle)
        {
            if (!_devices.TryAdd(device.Id, entry))
            {
                throw new InvalidOperationException($"A device with id '{device.Id}' is already attached.");
            }

            if (_running)
            {
                StartPumpUnsynchronized(entry);
            }
        }

#pragma warning disable CA1873 // once per attach, not a hot path
        VirtioPanicLog.DeviceAttached(_logger, device.Id, PolicyNames.PanicPlan(entry.Policy), PolicyNames.WatchdogPlan(entry.Policy));
#pragma warning restore CA1873
    }

    /// <summary>Stops handling a device's events, after handling those already queued. The device itself is left alone.</summary>
    /// <param name="deviceId">The device's id.</param>
    /// <returns>False when no such device is attached.</returns>
    public async Task<bool> DetachAsync(string deviceId)
    {
        if (!_devices.TryRemove(deviceId, out DeviceEntry? entry))
        {
            return false;
        }

        await StopPumpAsync(entry).ConfigureAwait(false);
        VirtioPanicLog.DeviceDetached(_logger, deviceId);
        return true;
    }

    /// <summary>The policy set for a device (not counting a tripped storm guard; see <see cref="DeviceReport.EffectivePanicAction"/>).</summary>
    /// <param name="deviceId">The device's id.</param>
    /// <returns>The policy.</returns>
    /// <exception cref="KeyNotFoundException">No such device is attached.</exception>
    public DevicePolicy GetPolicy(string deviceId) => Entry(deviceId).Policy;

    /// <summary>Changes a device's policy at run time, effective from the next event or deadline; resets the storm guard.</summary>
    /// <param name="deviceId">The device's id.</param>
    /// <param name="policy">The new policy.</param>
    /// <param name="cancellationToken">Cancels waiting for the device's current event to finish.</param>
    /// <returns>A task that completes once the policy is in force.</returns>
    /// <exception cref="KeyNotFoundException">No such device is attached.</exception>
    /// <exception cref="ArgumentException"><paramref name="policy"/> is invalid.</exception>
    public async Task SetPolicyAsync(string deviceId, DevicePolicy policy, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ThrowIfInvalid(policy, nameof(policy));
        DeviceEntry entry = Entry(deviceId);
        await entry.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            entry.Policy = policy;
            entry.State = PolicyEngine.OnPolicyChanged(entry.State);
        }
        finally
        {
            entry.Gate.Release();
        }

#pragma warning disable CA1873 // once per management request, not a hot path
        VirtioPanicLog.PolicyChanged(_logger, deviceId, PolicyNames.PanicPlan(policy), PolicyNames.WatchdogPlan(policy));
#pragma warning restore CA1873
    }

    /// <summary>
    /// Management Continue: resumes a VM the policy paused (preserve, watchdog pause, storm guard)
    /// and clears the device's panicked state and any pending deadline.
    /// </summary>
    /// <param name="deviceId">The device's id.</param>
    /// <param name="cancellationToken">Cancels waiting for the device's current event to finish.</param>
    /// <returns>What was done (the resume call and its outcome, if one was needed).</returns>
    /// <exception cref="KeyNotFoundException">No such device is attached.</exception>
    public Task<HandledEvent> ContinueAsync(string deviceId, CancellationToken cancellationToken = default) =>
        RequestAsync(Entry(deviceId), "continue", "CONTINUE", PolicyEngine.OnContinue, cancellationToken);

    /// <summary>
    /// Tells the service that the guest reset (rebooted) by itself, as a hypervisor sees it: cancels a
    /// pending grace window or crash-kernel deadline and clears the panicked state.
    /// </summary>
    /// <param name="deviceId">The device's id.</param>
    /// <param name="cancellationToken">Cancels waiting for the device's current event to finish.</param>
    /// <returns>What was done.</returns>
    /// <exception cref="KeyNotFoundException">No such device is attached.</exception>
    public Task<HandledEvent> NotifyGuestResetAsync(string deviceId, CancellationToken cancellationToken = default) =>
        RequestAsync(Entry(deviceId), "guest-reset", "GUEST_RESET", PolicyEngine.OnGuestReset, cancellationToken);

    // Opens the journal and starts the pumps (the hosted service's StartAsync).
    internal void Start()
    {
        lock (_lifecycle)
        {
            if (_running)
            {
                return;
            }

            JournalRecoveryReport report = _journal.Open();
            Volatile.Write(ref _recovery, report);
            _recoveriesClaimed.Clear();
            _running = true;
            TimeSpan period = ActionRunner.SweepPeriod(_options.ActionTimeout);
            _sweeper = _time.CreateTimer(static state => ((PolicyService)state!).Sweep(), this, period, period);
            foreach (DeviceEntry entry in _devices.Values)
            {
                StartPumpUnsynchronized(entry);
            }
        }
    }

    // Stops the pumps after they drained their channels, then closes the journal.
    internal async Task StopAsync()
    {
        DeviceEntry[] entries;
        lock (_lifecycle)
        {
            if (!_running)
            {
                return;
            }

            _running = false;
            entries = [.. _devices.Values];
        }

        await StopRecoveriesAsync().ConfigureAwait(false);
        await Task.WhenAll(entries.Select(StopPumpAsync)).ConfigureAwait(false);
        _logs.LogFinalSuppressedSummaries(_devices.Values);
        lock (_lifecycle)
        {
            _sweeper?.Dispose();
            _sweeper = null;
            _journal.Close();
        }
    }

    /// <summary>Closes the journal and releases the meter; the hosted service normally stops it first.</summary>
    public void Dispose()
    {
        lock (_lifecycle)
        {
            _running = false;
            _recoveryStop?.Cancel();
            foreach (DeviceEntry entry in _devices.Values)
            {
                entry.Device.SetReportAcceptedObserver(null);
            }

            _sweeper?.Dispose();
            _sweeper = null;
            _journal.Close();
        }

        foreach (DeviceEntry entry in _devices.Values)
        {
            entry.Pump?.Cancel();
            entry.Pump?.Dispose();
            entry.Device.SetReportAcceptedObserver(null);
            entry.DeadlineTimer?.Dispose();
            entry.EscalationTimer?.Dispose();
        }

        _metrics.Dispose();
    }

    // The periodic sweep (a timer thread): action timeouts, and the summaries of suppressed lines.
    private void Sweep()
    {
        _logs.LogSuppressedSummaries(_devices);
        _actions.CancelOverdue();
    }

    private static void ThrowIfInvalid(DevicePolicy policy, string paramName)
    {
        var failures = new List<string>();
        VirtioPanicOptionsValidator.ValidatePolicy(policy, "DevicePolicy", failures);
        if (failures.Count > 0)
        {
            throw new ArgumentException(string.Join(" ", failures), paramName);
        }
    }

    private DeviceEntry Entry(string deviceId) =>
        _devices.TryGetValue(deviceId, out DeviceEntry? entry) ? entry : throw new KeyNotFoundException($"No device with id '{deviceId}' is attached.");

    private void StartPumpUnsynchronized(DeviceEntry entry)
    {
        // Journal on acceptance: a guest report is journaled before the guest sees it accepted.
        entry.Device.SetReportAcceptedObserver(_journal.OnReportAccepted);

        // The inline observer is registered only once the journal is open: before that, events wait for the pump.
        entry.Pump ??= new DevicePump(entry, HandleEventAsync);
        entry.Pump.Start(_options.InlinePanicHandling);

        // Decisions an earlier run made for this device and did not carry out (PolicyService.Recovery.cs).
        StartRecoveryUnsynchronized(entry);
    }

    private async Task StopPumpAsync(DeviceEntry entry)
    {
        // Reports accepted from now on are journaled when handled.
        entry.Device.SetReportAcceptedObserver(null);
        if (entry.Pump is DevicePump pump)
        {
            await pump.StopAsync().ConfigureAwait(false);
        }

        // Waits for a report taken inline that is still being handled.
        await entry.Gate.WaitAsync().ConfigureAwait(false);
        try
        {
            entry.Detached = true;
            entry.DeadlineTimer?.Dispose();
            entry.DeadlineTimer = null;
            entry.EscalationTimer?.Dispose();
            entry.EscalationTimer = null;
            _actions.Forget(entry);
        }
        finally
        {
            entry.Gate.Release();
        }
    }
}
