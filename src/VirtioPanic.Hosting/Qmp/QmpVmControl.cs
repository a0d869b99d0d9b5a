using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting.Qmp;

/// <summary>
/// Carries out the policy service's VM actions on a VMM through its QMP monitor (QEMU, or any VMM
/// with a QMP-compatible monitor), and reports the VM's run state.
/// </summary>
/// <remarks>
/// <para>
/// Connects to <see cref="QmpVmControlOptions.SocketPath"/> (QEMU: <c>-qmp unix:PATH,server=on,wait=off</c>),
/// performs the capabilities handshake, and reconnects whenever the monitor goes away. Each
/// operation is one QMP command (QEMU's <c>qapi/</c> schema): pause <c>stop</c>, resume <c>cont</c>,
/// reset <c>system_reset</c>, power off (libvirt's destroy) <c>quit</c>, shutdown
/// <c>system_powerdown</c>, dump <c>dump-guest-memory</c> (ELF, written by the VMM to the path the
/// policy service chose), inject-nmi <c>inject-nmi</c>. The result is the command's <c>return</c>, or a
/// failure carrying its QMP error class and description, a timeout, or "not connected": every
/// failure takes the policy's fallback, and none throws.
/// </para>
/// <para>
/// The VM's run state comes from <c>query-status</c> at each connection and the <c>STOP</c> and
/// <c>RESUME</c> events after it; <see cref="RunStateChanged"/> reports each change (the watchdog
/// counts VM run time only, so a host pauses and resumes the device with it).
/// </para>
/// </remarks>
public sealed class QmpVmControl : IVmControl, IAsyncDisposable, IVmRunStateSource
{
    private readonly QmpVmControlOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _connection;
    private readonly TaskCompletionSource _firstConnection = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private QmpClient? _client;
    private int _running = -1;    // -1 unknown, 0 stopped, 1 running; written by the event task only

    // STOP and SHUTDOWN events of the connections that ended (written by the connection task with Interlocked,
    // read by anyone); the current connection's are its client's StopEventsRead. A FollowDevice
    // binding compares the sum across a query-status to tell a VM stop from a driver reset.
    private long _stopEventsBefore;

    /// <summary>Starts connecting to the monitor in the background; operations fail as "not connected" until it is reached.</summary>
    /// <param name="options">Where the monitor is and how long its commands may take.</param>
    /// <param name="logger">Where connection changes and command outcomes are logged; null for none.</param>
    public QmpVmControl(QmpVmControlOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrEmpty(options.SocketPath);
        _options = options;
        _logger = logger ?? NullLogger.Instance;
        _connection = Task.Run(() => MaintainConnectionAsync(_stop.Token));
    }

    /// <summary>
    /// Raised when the VM starts or stops running (true: running). The first report of each
    /// connection comes from <c>query-status</c>; later ones from <c>STOP</c>, <c>SHUTDOWN</c> and
    /// <c>RESUME</c> events. Raised on the client's own event task, one at a time, never under a lock.
    /// </summary>
    public event Action<bool>? RunStateChanged;

    // A RESET event (the VM was reset: system_reset, a guest reboot, a watchdog action of the VMM).
    // Raised on the event task; for FollowDevice.
    internal event Action? VmReset;

    internal long StopEvents => Interlocked.Read(ref _stopEventsBefore) + (Volatile.Read(ref _client)?.StopEventsRead ?? 0);

    /// <summary>True while a monitor connection is established.</summary>
    public bool IsConnected => Volatile.Read(ref _client) is not null;

    /// <summary>Whether the VM runs, as last reported by the monitor; null before the first report.</summary>
    public bool? VmRunning => Volatile.Read(ref _running) switch
    {
        0 => false,
        1 => true,
        _ => null,
    };

    /// <summary>Completes when the first connection has been made and the run state read (for start-up ordering and tests).</summary>
    /// <param name="timeout">How long to wait.</param>
    /// <returns>True when connected within <paramref name="timeout"/>.</returns>
    public async Task<bool> WaitConnectedAsync(TimeSpan timeout)
    {
        try
        {
            await _firstConnection.Task.WaitAsync(timeout).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    /// <inheritdoc/>
    public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) =>
        RunAsync(context, "stop", null, _options.CommandTimeout, cancellationToken);

    /// <inheritdoc/>
    public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) =>
        RunAsync(context, "cont", null, _options.CommandTimeout, cancellationToken);

    /// <inheritdoc/>
    public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken) =>
        RunAsync(context, "system_reset", null, _options.CommandTimeout, cancellationToken);

    /// <inheritdoc/>
    public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken) =>
        RunAsync(context, "quit", null, _options.CommandTimeout, cancellationToken);

    /// <inheritdoc/>
    public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) =>
        RunAsync(context, "system_powerdown", null, _options.CommandTimeout, cancellationToken);

    /// <inheritdoc/>
    /// <remarks>The VMM writes the file itself (an ELF core, <c>paging: false</c>), so its process needs write access to <paramref name="path"/>'s directory. Bounded by <see cref="QmpVmControlOptions.DumpTimeout"/>.</remarks>
    public ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var arguments = new JsonObject
        {
            ["paging"] = false,
            ["protocol"] = "file:" + Path.GetFullPath(path),
        };
        return RunAsync(context, "dump-guest-memory", arguments, _options.DumpTimeout, cancellationToken);
    }

    /// <inheritdoc/>
    public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) =>
        RunAsync(context, "inject-nmi", null, _options.CommandTimeout, cancellationToken);

    /// <summary>
    /// Makes <paramref name="device"/> follow this VM: its watchdog counts only while the VM runs
    /// (<see cref="WatchdogDevice.Pause"/> at <c>STOP</c>, <see cref="WatchdogDevice.Resume"/> at
    /// <c>RESUME</c>, and the state <c>query-status</c> reports at each connection), a <c>RESET</c>
    /// of the VM is <see cref="WatchdogDevice.OnVmReset"/> (keeping the boot reason the device
    /// holds, which the policy service set before its reset), and a stop of the device's rings
    /// that the VMM did not accompany with a VM stop is ended as the driver reset it was
    /// (<see cref="WatchdogDevice.SetSuspendObserver"/>; spec §6.9a).
    /// </summary>
    /// <param name="device">The device served to this VM.</param>
    /// <returns>Disposing it ends the binding (the device keeps its last run state).</returns>
    public IDisposable FollowDevice(WatchdogDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return new QmpDeviceBinding(this, device, _logger, _stop.Token);
    }

    // query-status now: true running, false stopped, null when the monitor cannot say (not
    // connected, failed, timed out).
    internal async Task<bool?> QueryRunningAsync(CancellationToken cancellationToken) =>
        (await QueryRunStateAsync(cancellationToken).ConfigureAwait(false))?.Running;

    // query-status now: {running, status} (qapi/run-state.json StatusInfo); null when the monitor cannot say.
    internal async Task<VmRunState?> QueryRunStateAsync(CancellationToken cancellationToken)
    {
        QmpClient? client = Volatile.Read(ref _client);
        if (client is null)
        {
            return null;
        }

        QmpReply status = await client.ExecuteAsync("query-status", null, _options.CommandTimeout, cancellationToken).ConfigureAwait(false);
        if (!status.Succeeded || status.Return.ValueKind != JsonValueKind.Object || !status.Return.TryGetProperty("running", out JsonElement running) || running.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
        {
            return null;
        }

        string name = status.Return.TryGetProperty("status", out JsonElement s) && s.ValueKind == JsonValueKind.String ? s.GetString()! : (running.GetBoolean() ? "running" : "stopped");
        return new VmRunState(running.GetBoolean(), name);
    }

    Task<VmRunState?> IVmRunStateSource.QueryRunStateAsync(CancellationToken cancellationToken) => QueryRunStateAsync(cancellationToken);

    /// <summary>Stops reconnecting and closes the monitor connection.</summary>
    /// <returns>A task that completes when the connection is closed.</returns>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _connection.ConfigureAwait(false);
        _stop.Dispose();
    }

    private async ValueTask<VmControlResult> RunAsync(VmActionContext context, string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        QmpClient? client = Volatile.Read(ref _client);
        QmpReply reply = client is null
            ? QmpReply.Failed(QmpReplyStatus.Disconnected, $"the QMP monitor {_options.SocketPath} is not connected")
            : await client.ExecuteAsync(command, arguments, timeout, cancellationToken).ConfigureAwait(false);
        if (reply.Succeeded)
        {
            QmpLog.CommandDone(_logger, command, context.DeviceId, "ok");
            return VmControlResult.Success;
        }

        string outcome = reply.Describe();
        QmpLog.CommandFailed(_logger, command, context.DeviceId, outcome);
        return VmControlResult.Failure($"QMP {command}: {outcome}");
    }

    private async Task MaintainConnectionAsync(CancellationToken stop)
    {
        bool failureLogged = false;
        while (!stop.IsCancellationRequested)
        {
            (QmpClient? client, string? error) = await QmpClient.ConnectAsync(_options.SocketPath, _options.CommandTimeout, stop).ConfigureAwait(false);
            if (client is null)
            {
                if (!failureLogged && !stop.IsCancellationRequested)
                {
                    failureLogged = true;
                    QmpLog.ConnectFailed(_logger, _options.SocketPath, error ?? "unknown");
                }

                await DelayAsync(_options.ReconnectDelay, stop).ConfigureAwait(false);
                continue;
            }

            failureLogged = false;
            string reason = await ServeAsync(client, stop).ConfigureAwait(false);
            _ = Interlocked.Add(ref _stopEventsBefore, client.StopEventsRead);
            Volatile.Write(ref _client, null);
            await client.DisposeAsync().ConfigureAwait(false);
            if (!stop.IsCancellationRequested)
            {
                QmpLog.Disconnected(_logger, _options.SocketPath, reason);
                await DelayAsync(_options.ReconnectDelay, stop).ConfigureAwait(false);
            }
        }
    }

    // One connection: read the run state, publish the client, then follow its events until it ends.
    private async Task<string> ServeAsync(QmpClient client, CancellationToken stop)
    {
        QmpReply status = await client.ExecuteAsync("query-status", null, _options.CommandTimeout, stop).ConfigureAwait(false);
        string state = status.Succeeded && status.Return.ValueKind == JsonValueKind.Object && status.Return.TryGetProperty("status", out JsonElement s) && s.ValueKind == JsonValueKind.String
            ? s.GetString()!
            : "unknown";
        if (status.Succeeded && status.Return.ValueKind == JsonValueKind.Object && status.Return.TryGetProperty("running", out JsonElement running) && running.ValueKind is JsonValueKind.True or JsonValueKind.False)
        {
            SetRunning(running.GetBoolean(), "query-status");
        }

        Volatile.Write(ref _client, client);
        QmpLog.Connected(_logger, _options.SocketPath, client.Version, state);
        _ = _firstConnection.TrySetResult();
        try
        {
            await foreach (QmpEvent e in client.Events.ReadAllAsync(stop).ConfigureAwait(false))
            {
                switch (e.Name)
                {
                    // A shut-down VM runs no vCPU: its watchdog stops counting until a RESUME
                    // (system_reset + cont under -no-shutdown), exactly as after STOP.
                    case "STOP":
                    case "SHUTDOWN":
                        SetRunning(false, e.Name);
                        break;
                    case "RESET":
                        VmReset?.Invoke();
                        break;
                    case "RESUME":
                        SetRunning(true, e.Name);
                        break;
                }
            }
        }
        catch (OperationCanceledException)
        {
            return "stopping";
        }

        return await client.Completion.ConfigureAwait(false);
    }

    private void SetRunning(bool running, string source)
    {
        int value = running ? 1 : 0;
        if (Interlocked.Exchange(ref _running, value) == value)
        {
            return;
        }

        QmpLog.RunState(_logger, running ? "running" : "stopped", source);
        RunStateChanged?.Invoke(running);
    }

    private static async Task DelayAsync(TimeSpan delay, CancellationToken stop)
    {
        try
        {
            await Task.Delay(delay, stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }
}
