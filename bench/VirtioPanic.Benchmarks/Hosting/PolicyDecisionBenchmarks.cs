using BenchmarkDotNet.Attributes;
using VirtioPanic.Device;
using VirtioPanic.Hosting;
using VirtioPanic.Hosting.Policy;

namespace VirtioPanic.Benchmarks.Hosting;

// The pure policy decision for a panic (storm-guard bookkeeping included) and for an expiry.
[MemoryDiagnoser]
public class PolicyDecisionBenchmarks
{
    private readonly DevicePolicy _policy = new() { OnPanic = PanicAction.CoredumpRestart, StormThreshold = 3 };
    private readonly GuestPanickedEvent _panic = new() { DeviceId = "d", Sequence = 1, VmRunTime = default, HostTime = DateTimeOffset.UnixEpoch, Source = WatchdogEventSource.ConfigField };
    private readonly WatchdogExpiredEvent _expired = new() { DeviceId = "d", Sequence = 2, VmRunTime = default, HostTime = DateTimeOffset.UnixEpoch, Timeout = TimeSpan.FromSeconds(5) };
    private DateTimeOffset _now = DateTimeOffset.UnixEpoch;

    [Benchmark]
    public int DecidePanic()
    {
        _now += TimeSpan.FromHours(1);
        return PolicyEngine.OnEvent(DevicePolicyState.Initial, _policy, _panic, _now).Steps.Length;
    }

    [Benchmark]
    public int DecideExpiry() => PolicyEngine.OnEvent(DevicePolicyState.Initial, _policy, _expired, _now).Steps.Length;
}
