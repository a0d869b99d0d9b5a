using Microsoft.Extensions.Logging;
using VirtioPanic.Hosting;
using VirtioPanic.RateLimiting;

namespace VirtioPanic.Host.Serve;

// In vhost-user mode the front end (QEMU, Cloud Hypervisor) owns the VM: this process cannot pause,
// reset or power it off. Every call reports failure truthfully, so the journal shows the decided
// action and that it was not carried out; a management layer that reads the journal (or the QMP-shaped
// event) carries it out on the front end.
//
// A guest (through a front end that writes panic_events in a loop) decides how often this is
// called, so its line is rate-limited: 10 a minute, then a count of what was not logged.
internal sealed class FrontEndVmControl : IVmControl
{
    private readonly ILogger _log;
    private readonly LogRateLimiter _lines;

    internal FrontEndVmControl(ILogger log, TimeProvider time)
    {
        _log = log;
        _lines = new LogRateLimiter(time, 10, TimeSpan.FromMinutes(1));
    }

    public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) => NotHere(context);

    public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) => NotHere(context);

    public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken) => NotHere(context);

    public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken) => NotHere(context);

    public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) => NotHere(context);

    public ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken) => NotHere(context);

    public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) => NotHere(context);

    // At the end of serving: report what the limit held back.
    internal void LogSuppressed()
    {
        long suppressed = _lines.TakeSuppressed();
        if (suppressed > 0)
        {
            HostLog.LinesSuppressed(_log, suppressed, nameof(HostLog.FrontEndOwnsVm));
        }
    }

    private ValueTask<VmControlResult> NotHere(VmActionContext context)
    {
        if (_lines.TryAcquire(out long suppressed))
        {
            if (suppressed > 0)
            {
                HostLog.LinesSuppressed(_log, suppressed, nameof(HostLog.FrontEndOwnsVm));
            }

            HostLog.FrontEndOwnsVm(_log, PolicyNames.Of(context.Operation), context.PolicyAction, context.DeviceId);
        }

        return ValueTask.FromResult(VmControlResult.Failure("vhost-user mode: the front end owns the VM"));
    }
}
