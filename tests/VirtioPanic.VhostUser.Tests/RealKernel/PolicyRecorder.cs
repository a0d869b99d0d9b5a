using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using VirtioPanic.Device;
using VirtioPanic.Hosting;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>What a host policy does about a watchdog event (the actions of spec §6.1).</summary>
internal enum PolicyAction
{
    /// <summary>Record the event and let the VM run.</summary>
    None,

    /// <summary>Reset the VM.</summary>
    Reset,

    /// <summary>Power the VM off.</summary>
    PowerOff,

    /// <summary>Pause the VM for inspection.</summary>
    Pause,

    /// <summary>Dump the VM's memory, then reset it.</summary>
    Dump,
}

/// <summary>One action the policy decided on, with the event that caused it.</summary>
internal readonly record struct RecordedAction(WatchdogEvent Event, PolicyAction Action);

/// <summary>
/// The host's real policy service (<see cref="PolicyService"/> from VirtioPanic.Hosting, on a
/// generic host, journaling to a temporary directory) attached to the device under test, with a VM
/// control that records every call instead of acting on a VM (QEMU owns the VM in these tests).
/// "The configured action is recorded" means: the service handled the event, journaled it, and
/// made the VM-control calls its policy names; <see cref="Actions"/> folds those calls back into
/// the test's <see cref="PolicyAction"/> vocabulary.
/// </summary>
internal sealed class PolicyRecorder : IAsyncDisposable
{
    private readonly List<HandledEvent> _handled = [];
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly StringBuilder _log = new();
    private readonly IHost _host;
    private readonly RecordingVmControl _vm = new();
    private readonly string _directory;

    internal PolicyRecorder(WatchdogDevice device, IReadOnlyDictionary<WatchdogEventKind, PolicyAction> policy)
    {
        _directory = Directory.CreateTempSubdirectory("vp-policy-").FullName;
        HostApplicationBuilder builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddVirtioPanic(o =>
        {
            o.JournalPath = Path.Combine(_directory, "journal.jsonl");
            o.DumpDirectory = Path.Combine(_directory, "dumps");
            o.Policy = ToDevicePolicy(policy);
        });
        _host = builder.Build();
        Manager.EventHandled += (_, e) =>
        {
            lock (_handled)
            {
                _handled.Add(e);
                _log.Append(CultureInfo.InvariantCulture, $"[{_clock.Elapsed.TotalSeconds,7:F2} s] {(e.Event is null ? e.Name : Describe(e.Event))}\n");
                _log.Append(CultureInfo.InvariantCulture, $"            policy service: {e.Name} -> {e.PolicyAction ?? "-"}, {e.Outcome}, journaled {e.Journaled}\n");
            }
        };
        Manager.Attach(device, _vm);
        _host.Start();
    }

    internal PolicyService Manager => _host.Services.GetRequiredService<PolicyService>();

    /// <summary>Every device event the policy service handled so far, in order.</summary>
    internal IReadOnlyList<WatchdogEvent> Events
    {
        get
        {
            lock (_handled)
            {
                return [.. _handled.Where(h => h.Event is not null).Select(h => h.Event!)];
            }
        }
    }

    /// <summary>For every handled event whose policy called the VM: the action those calls amount to.</summary>
    internal IReadOnlyList<RecordedAction> Actions
    {
        get
        {
            lock (_handled)
            {
                return [.. _handled.Where(h => h.Event is not null && h.Journaled).Select(h => new RecordedAction(h.Event!, Fold(h)))];
            }
        }
    }

    /// <summary>The journal's lines (one per handled item).</summary>
    internal string[] JournalLines()
    {
        string path = Path.Combine(_directory, "journal.jsonl");
        return File.Exists(path) ? File.ReadAllLines(path) : [];
    }

    /// <summary>Events of type <typeparamref name="T"/> handled so far.</summary>
    internal IReadOnlyList<T> Of<T>()
        where T : WatchdogEvent => [.. Events.OfType<T>()];

    /// <summary>Waits (bounded) for the first event of type <typeparamref name="T"/>; null when none came in time.</summary>
    internal async Task<T?> WaitForAsync<T>(TimeSpan timeout, CancellationToken cancellationToken = default)
        where T : WatchdogEvent
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < timeout && !cancellationToken.IsCancellationRequested)
        {
            if (Events.OfType<T>().FirstOrDefault() is { } found)
            {
                return found;
            }

            try
            {
                await Task.Delay(25, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        return Events.OfType<T>().FirstOrDefault();
    }

    /// <summary>A one-line description of an event, for test output (message and log tail shortened).</summary>
    internal static string Describe(WatchdogEvent e) => e switch
    {
        GuestReportEvent r => $"#{r.Sequence} {r.Kind} via {r.Source}, record {r.RecordSequence?.ToString(CultureInfo.InvariantCulture) ?? "-"}, vCPU {r.VcpuId?.ToString(CultureInfo.InvariantCulture) ?? "-"}, "
            + $"guest time {r.GuestTime?.TotalSeconds.ToString("F3", CultureInfo.InvariantCulture) ?? "-"} s, codes [{string.Join(", ", r.Codes)}], "
            + $"message \"{r.Message}\", log tail {r.LogTail?.Length ?? 0} chars",
        WatchdogExpiredEvent x => $"#{x.Sequence} {x.Kind} after {x.Timeout.TotalSeconds} s, run time {x.VmRunTime.TotalSeconds:F2} s",
        WatchdogArmedEvent a => $"#{a.Sequence} {a.Kind} ({(a.ByHeartbeat ? "heartbeat" : "START")}, {a.Timeout.TotalSeconds} s), run time {a.VmRunTime.TotalSeconds:F2} s",
        DriverResetEvent d => $"#{d.Sequence} {d.Kind}{(d.WatchdogKeptRunning ? " (watchdog kept running: NOWAYOUT)" : string.Empty)}, run time {d.VmRunTime.TotalSeconds:F2} s",
        WatchdogStoppedEvent t => $"#{t.Sequence} {t.Kind} ({t.Reason}), run time {t.VmRunTime.TotalSeconds:F2} s",
        _ => $"#{e.Sequence} {e.Kind}, run time {e.VmRunTime.TotalSeconds:F2} s",
    };

    /// <summary>Everything the policy service handled, with host times relative to its creation.</summary>
    public override string ToString()
    {
        lock (_handled)
        {
            return _log.ToString();
        }
    }

    public async ValueTask DisposeAsync()
    {
        using (var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            await _host.StopAsync(stop.Token).ConfigureAwait(false);
        }

        _host.Dispose();
        await TestContext.Out.WriteLineAsync("--- events handled by the policy service ---\n" + this).ConfigureAwait(false);
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static DevicePolicy ToDevicePolicy(IReadOnlyDictionary<WatchdogEventKind, PolicyAction> policy)
    {
        PolicyAction onExpiry = policy.TryGetValue(WatchdogEventKind.Expired, out PolicyAction e) ? e : PolicyAction.None;
        PolicyAction onPanic = policy.TryGetValue(WatchdogEventKind.GuestPanicked, out PolicyAction p) ? p : PolicyAction.None;
        return new DevicePolicy
        {
            OnWatchdog = onExpiry switch
            {
                PolicyAction.Reset => WatchdogAction.Reset,
                PolicyAction.PowerOff => WatchdogAction.Poweroff,
                PolicyAction.Pause => WatchdogAction.Pause,
                PolicyAction.Dump => WatchdogAction.Dump,
                _ => WatchdogAction.None,
            },
            OnPanic = onPanic switch
            {
                PolicyAction.Reset => PanicAction.Restart,
                PolicyAction.PowerOff => PanicAction.Destroy,
                PolicyAction.Pause => PanicAction.Preserve,
                PolicyAction.Dump => PanicAction.CoredumpRestart,
                _ => PanicAction.LogOnly,
            },
            // Crash-loaded and shutdown are logged; no crash-kernel deadline (the guest handles it).
            CrashKernelDeadline = TimeSpan.Zero,
        };
    }

    // The VM-control calls of one handled event, in the test's vocabulary.
    private static PolicyAction Fold(HandledEvent handled)
    {
        VmOperation[] calls = [.. handled.Steps.Select(s => s.Operation)];
        return calls switch
        {
            [] => PolicyAction.None,
            [VmOperation.DumpGuestMemory, ..] => PolicyAction.Dump,
            [VmOperation.Reset, ..] => PolicyAction.Reset,
            [VmOperation.PowerOff, ..] => PolicyAction.PowerOff,
            [VmOperation.Pause, ..] => PolicyAction.Pause,
            _ => (PolicyAction)(-1),
        };
    }

    // QEMU owns the VM here: every call is recorded and reported as done.
    private sealed class RecordingVmControl : IVmControl
    {
        public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        public ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken) => Done();

        public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        private static ValueTask<VmControlResult> Done() => ValueTask.FromResult(VmControlResult.Success);
    }
}
