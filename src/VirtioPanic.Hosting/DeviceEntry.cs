using VirtioPanic.Device;
using VirtioPanic.Hosting.Policy;
using VirtioPanic.RateLimiting;

namespace VirtioPanic.Hosting;

// One attached device: its VM control, policy, policy state and event pump. Everything that
// changes State runs under Gate (an async lock), so events, deadlines and management requests of
// one device are handled one at a time, in order.
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

    internal CancellationTokenSource PumpStop { get; } = new();

    internal Task? Pump { get; set; }

    // Guarded by Gate (written), read lock-free by the status query.
    internal ITimer? DeadlineTimer { get; set; }

    internal bool Detached { get; set; }

    // The token of the VM-control call in flight, reused between calls (guarded by Gate); the
    // manager's action sweeper cancels it once the call outlasts its deadline.
    internal CancellationTokenSource? ActionCancel { get; set; }

    // TimeProvider timestamp by which the call in flight must finish; 0 when none is in flight.
    internal long ActionDeadline;

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
