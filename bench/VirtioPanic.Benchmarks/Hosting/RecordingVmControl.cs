using System.Diagnostics;
using VirtioPanic.Hosting;

namespace VirtioPanic.Benchmarks.Hosting;

// A VM control that does nothing but note when (Stopwatch timestamp) and how often it was called.
internal sealed class RecordingVmControl : IVmControl
{
    private long _calls;
    private long _lastCall;

    internal long Calls => Volatile.Read(ref _calls);

    internal long LastCall => Volatile.Read(ref _lastCall);

    internal Action<VmActionContext, long>? OnCall { get; set; }

    public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    public ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken) => Call(context);

    public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) => Call(context);

    private ValueTask<VmControlResult> Call(VmActionContext context)
    {
        long now = Stopwatch.GetTimestamp();
        Volatile.Write(ref _lastCall, now);
        OnCall?.Invoke(context, now);
        Interlocked.Increment(ref _calls);
        return ValueTask.FromResult(VmControlResult.Success);
    }
}
