using VirtioPanic.Device;
using VirtioPanic.Hosting.Policy;
using VirtioPanic.RateLimiting;

namespace VirtioPanic.Hosting;

// One attached device: its VM control, policy, policy state and event pump. Everything that
// changes State runs under Gate (an async lock), so events, deadlines and management requests of
// one device are handled one at a time, in order (DevicePump orders the events). The gate is held
// across the VM-control calls (ActionRunner) and journal appends of one item.
internal sealed class DeviceEntry
{
    private DevicePolicy _policy;
    private DevicePolicyState _state = DevicePolicyState.Initial;
    private HandledEvent? _lastHandled;
    private long _eventsHandled;

    internal DeviceEntry(WatchdogDevice device, IVmControl vm, DevicePolicy policy, LogRateLimiter logs)
    {
        Logs = logs;
        Device = device;
        Vm = vm;
        _policy = policy;
    }

    internal WatchdogDevice Device { get; }

    internal string Id => Device.Id;

    internal IVmControl Vm { get; }

    // The rate limit of this device's per-event log lines.
    internal LogRateLimiter Logs { get; }

    internal SemaphoreSlim Gate { get; } = new(1, 1);

    // Created at the first start of the service with this device attached (under the service's lifecycle lock).
    internal DevicePump? Pump { get; set; }

    // Guarded by Gate (written), read lock-free by the status query.
    internal ITimer? DeadlineTimer { get; set; }

    // The timer of State.Escalation's next step; guarded by Gate like DeadlineTimer.
    internal ITimer? EscalationTimer { get; set; }

    internal bool Detached { get; set; }

    // Guarded by Gate: the journal id of the record that armed State.Deadline (a grace window, a
    // crash kernel's deadline, or a recovery re-arming one); the record that fires or cancels the
    // deadline settles it. 0 when none (or no journal).
    internal long DeferredBy { get; set; }

    // Guarded by Gate: the journal id of the pending "escalation" record that describes
    // State.Escalation (written after its last step, or carried in from an earlier run); the
    // decision that advances, cancels or replaces the escalation settles it. 0 when none (or no journal).
    internal long EscalationBy { get; set; }

    internal DevicePolicy Policy
    {
        get => Volatile.Read(ref _policy);
        set => Volatile.Write(ref _policy, value);
    }

    internal DevicePolicyState State
    {
        get => Volatile.Read(ref _state);
        set => Volatile.Write(ref _state, value);
    }

    internal HandledEvent? LastHandled => Volatile.Read(ref _lastHandled);

    internal long EventsHandled => Interlocked.Read(ref _eventsHandled);

    internal void Record(HandledEvent handled)
    {
        Volatile.Write(ref _lastHandled, handled);
        Interlocked.Increment(ref _eventsHandled);
    }
}
