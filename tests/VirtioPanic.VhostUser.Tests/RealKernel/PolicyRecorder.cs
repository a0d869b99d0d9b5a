using System.Diagnostics;
using System.Text;
using VirtioPanic.Device;

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
/// A test-local stand-in for the host's policy service (built elsewhere): reads the device's typed
/// event channel and records, for each event whose kind the policy configures, that action. It
/// performs nothing; "the configured action is recorded" is what the real-kernel tests assert.
/// </summary>
internal sealed class PolicyRecorder : IAsyncDisposable
{
    private readonly IReadOnlyDictionary<WatchdogEventKind, PolicyAction> _policy;
    private readonly List<WatchdogEvent> _events = [];
    private readonly List<RecordedAction> _actions = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly StringBuilder _log = new();
    private readonly Task _pump;

    internal PolicyRecorder(WatchdogDevice device, IReadOnlyDictionary<WatchdogEventKind, PolicyAction> policy)
    {
        _policy = policy;
        _pump = Task.Run(() => PumpAsync(device, _stop.Token));
    }

    /// <summary>Every event read so far, in order.</summary>
    internal IReadOnlyList<WatchdogEvent> Events
    {
        get
        {
            lock (_events)
            {
                return [.. _events];
            }
        }
    }

    /// <summary>Every action recorded so far, in order.</summary>
    internal IReadOnlyList<RecordedAction> Actions
    {
        get
        {
            lock (_events)
            {
                return [.. _actions];
            }
        }
    }

    /// <summary>Events of type <typeparamref name="T"/> read so far.</summary>
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
        GuestReportEvent r => $"#{r.Sequence} {r.Kind} via {r.Source}, record {r.RecordSequence?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"}, vCPU {r.VcpuId?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"}, "
            + $"guest time {r.GuestTime?.TotalSeconds.ToString("F3", System.Globalization.CultureInfo.InvariantCulture) ?? "-"} s, codes [{string.Join(", ", r.Codes)}], "
            + $"message \"{r.Message}\", log tail {r.LogTail?.Length ?? 0} chars",
        WatchdogExpiredEvent x => $"#{x.Sequence} {x.Kind} after {x.Timeout.TotalSeconds} s, run time {x.VmRunTime.TotalSeconds:F2} s",
        WatchdogArmedEvent a => $"#{a.Sequence} {a.Kind} ({(a.ByHeartbeat ? "heartbeat" : "START")}, {a.Timeout.TotalSeconds} s), run time {a.VmRunTime.TotalSeconds:F2} s",
        DriverResetEvent d => $"#{d.Sequence} {d.Kind}{(d.WatchdogKeptRunning ? " (watchdog kept running: NOWAYOUT)" : string.Empty)}, run time {d.VmRunTime.TotalSeconds:F2} s",
        WatchdogStoppedEvent t => $"#{t.Sequence} {t.Kind} ({t.Reason}), run time {t.VmRunTime.TotalSeconds:F2} s",
        _ => $"#{e.Sequence} {e.Kind}, run time {e.VmRunTime.TotalSeconds:F2} s",
    };

    /// <summary>Everything the recorder saw, with host times relative to its creation.</summary>
    public override string ToString()
    {
        lock (_events)
        {
            return _log.ToString();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _pump.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
        await TestContext.Out.WriteLineAsync("--- device events and recorded policy actions ---\n" + this).ConfigureAwait(false);
    }

    private async Task PumpAsync(WatchdogDevice device, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (WatchdogEvent e in device.Events.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                lock (_events)
                {
                    _events.Add(e);
                    _log.Append(System.Globalization.CultureInfo.InvariantCulture, $"[{_clock.Elapsed.TotalSeconds,7:F2} s] {Describe(e)}\n");
                    if (_policy.TryGetValue(e.Kind, out PolicyAction action))
                    {
                        _actions.Add(new RecordedAction(e, action));
                        _log.Append(System.Globalization.CultureInfo.InvariantCulture, $"            policy: {e.Kind} -> {action}\n");
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Disposed.
        }
    }
}
