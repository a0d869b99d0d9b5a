using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace VirtioPanic.Hosting.Control;

/// <summary>
/// The policy service's management socket: a Unix socket that speaks QMP's framing (greeting,
/// <c>qmp_capabilities</c>, <c>execute</c> / <c>return</c> / <c>error</c>, asynchronous events)
/// with the service's own commands, so that any QMP client library can manage it.
/// </summary>
/// <remarks>
/// <para>Commands: <c>query-commands</c>; <c>query-service</c> (the whole status);
/// <c>query-devices</c> (every device's status); <c>query-device</c> <c>{"device": ID}</c> (one
/// device: watchdog, policy, condition, last event, deadline); <c>query-policy</c>
/// <c>{"device": ID}</c>; <c>set-policy</c> <c>{"device": ID, "policy": {...}}</c> (the members of
/// <c>query-policy</c>'s answer, each optional: <c>on-panic</c>, <c>on-watchdog</c>,
/// <c>panic-grace-period-ms</c>, <c>crash-kernel-deadline-ms</c>, <c>on-crash-kernel-timeout</c>,
/// <c>storm-threshold</c>, <c>storm-window-ms</c>); <c>continue</c> <c>{"device": ID}</c> (resume a
/// VM the policy preserved). Once a client has left capabilities negotiation, every event the
/// service handles reaches it as a QMP event (the same JSON as <see cref="HandledEvent.Json"/>).</para>
/// <para>The socket file is created owner-only (0600). Clients are as untrusted as any input: a
/// line longer than 64 KiB or one that is not a JSON object ends the connection; at most 16
/// clients at once; a client that does not read its events loses the oldest (256 are queued per
/// client) and is told how many in a <c>VIRTIO_WDT_EVENTS_LOST</c> event.</para>
/// </remarks>
public sealed class ManagementSocket : IAsyncDisposable
{
    internal const int MaxClients = 16;

    private readonly PolicyService _service;
    private readonly ILogger _logger;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<ManagementConnection> _clients = [];
    private readonly Lock _lock = new();
    private readonly Task _accepting;

    /// <summary>Starts listening on <paramref name="socketPath"/> (a stale socket file there is replaced).</summary>
    /// <param name="service">The policy service to manage.</param>
    /// <param name="socketPath">The Unix socket to create.</param>
    /// <param name="logger">Where connections and refused requests are logged; null for none.</param>
    public ManagementSocket(PolicyService service, string socketPath, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(service);
        ArgumentException.ThrowIfNullOrEmpty(socketPath);
        _service = service;
        _logger = logger ?? NullLogger.Instance;
        SocketPath = socketPath;
        if (File.Exists(socketPath))
        {
            File.Delete(socketPath);
        }

        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }

            _listener.Listen(MaxClients);
        }
        catch
        {
            _listener.Dispose();
            throw;
        }

        _service.EventHandled += OnEventHandled;
        _accepting = Task.Run(AcceptLoopAsync);
        ManagementLog.Listening(_logger, socketPath);
    }

    /// <summary>The socket's path.</summary>
    public string SocketPath { get; }

    internal int ClientCount
    {
        get
        {
            lock (_lock)
            {
                return _clients.Count;
            }
        }
    }

    /// <summary>Closes every client and the socket, and removes the socket file.</summary>
    /// <returns>A task that completes when everything is closed.</returns>
    public async ValueTask DisposeAsync()
    {
        _service.EventHandled -= OnEventHandled;
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        await _accepting.ConfigureAwait(false);
        ManagementConnection[] clients;
        lock (_lock)
        {
            clients = [.. _clients];
        }

        foreach (ManagementConnection client in clients)
        {
            await client.DisposeAsync().ConfigureAwait(false);
        }

        try
        {
            File.Delete(SocketPath);
        }
        catch (IOException)
        {
        }

        _stop.Dispose();
    }

    internal void Remove(ManagementConnection connection)
    {
        lock (_lock)
        {
            _ = _clients.Remove(connection);
        }
    }

    private void OnEventHandled(object? sender, HandledEvent handled)
    {
        ManagementConnection[] clients;
        lock (_lock)
        {
            clients = [.. _clients];
        }

        // Outside the lock; each client queues without blocking (DropOldest).
        foreach (ManagementConnection client in clients)
        {
            client.QueueEvent(handled.Json);
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            ManagementConnection? connection = null;
            lock (_lock)
            {
                if (_clients.Count < MaxClients)
                {
                    connection = new ManagementConnection(this, socket, new ManagementCommands(_service), _stop.Token);
                    _clients.Add(connection);
                }
            }

            if (connection is null)
            {
                ManagementLog.Refused(_logger, SocketPath, MaxClients);
                socket.Dispose();
                continue;
            }

            connection.Start();
        }
    }
}
