using System.Collections.Concurrent;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting.Tests.Rig;

// Records every call; operations listed in Failures fail with that reason. With RunState set it
// reports the VM's run state as a QMP monitor would (IVmRunStateSource: null = not reachable).
internal sealed class FakeVmControl : IVmControl, IVmRunStateSource
{
    private readonly ConcurrentQueue<(VmOperation Operation, VmActionContext Context)> _calls = new();
    private int _stateQueries;

    public FakeVmControl(WatchdogDevice? device = null) => Device = device;

    public WatchdogDevice? Device { get; }

    public ConcurrentDictionary<VmOperation, string> Failures { get; } = new();

    // The boot reason the device held when each reset was requested.
    public ConcurrentQueue<WatchdogBootReason> BootReasonsAtReset { get; } = new();

    public ConcurrentQueue<string> DumpPaths { get; } = new();

    // The managed thread of every call, in order.
    public ConcurrentQueue<int> CallThreads { get; } = new();

    // Runs inside ResetAsync before it returns, as a hypervisor resetting the VM synchronously would.
    public Action? OnReset { get; set; }

    public VmOperation[] Operations => [.. _calls.Select(c => c.Operation)];

    // The VM's run state: true running, false paused, null unknown (the monitor cannot be reached).
    public bool? RunState { get; set; }

    // How many times query-status was asked.
    public int StateQueries => Volatile.Read(ref _stateQueries);

    bool? IVmRunStateSource.VmRunning => RunState;

    Task<VmRunState?> IVmRunStateSource.QueryRunStateAsync(CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _stateQueries);
        return Task.FromResult(RunState is bool running ? new VmRunState(running, running ? "running" : "paused") : (VmRunState?)null);
    }

    public VmActionContext[] Contexts => [.. _calls.Select(c => c.Context)];

    public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken)
    {
        if (Device is not null)
        {
            BootReasonsAtReset.Enqueue(Device.GetStatus().BootReason);
        }

        OnReset?.Invoke();
        return Call(context);
    }

    public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    public ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken)
    {
        DumpPaths.Enqueue(path);
        return Call(context);
    }

    public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    private ValueTask<VmControlResult> Call(VmActionContext context)
    {
        CallThreads.Enqueue(Environment.CurrentManagedThreadId);
        _calls.Enqueue((context.Operation, context));
        return ValueTask.FromResult(Failures.TryGetValue(context.Operation, out string? error) ? VmControlResult.Failure(error) : VmControlResult.Success);
    }
}
