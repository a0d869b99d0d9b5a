using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Loop;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser;

/// <summary>
/// Serves one <see cref="IVirtioDevice"/> to a vhost-user front end (QEMU, Cloud Hypervisor, ...)
/// over a Unix domain socket: the back end listens, the front end connects, and the device's
/// queues are processed here, in guest memory the front end shares through file descriptors.
/// </summary>
/// <remarks>
/// <para>
/// One front end is served at a time (vhost-user has one front end per socket). When it goes away
/// the device is reset, guest memory is unmapped and every descriptor it sent is closed; the back
/// end then serves the next connection, so a restarted VMM can reconnect. A connection attempt
/// made while another front end is served is closed at once with a logged reason (after a short
/// grace for a VMM that reconnects before its old connection has been seen to close); a
/// connection that does not set itself up within <see cref="VhostUserBackendOptions.SetupTimeout"/>
/// is closed.
/// </para>
/// <para>
/// Everything the front end sends is validated: a malformed or unsupported message is refused,
/// never a crash. A refused request that has a reply of its own is never left unanswered: the
/// front end gets the protocol's failure reply where one exists (GET_CONFIG) and the connection
/// is closed with a logged reason otherwise; any other refused request is answered with a
/// failure when the front end asked for REPLY_ACK. Guest memory regions must lie inside their
/// files (see <see cref="VhostUserBackendOptions.RequireSealedMemory"/> for files the front end
/// could truncate later). Every log line a front end can cause is rate-limited, per connection
/// and per back end, with a summary of what was not logged.
/// </para>
/// <para>
/// Offered: VIRTIO_F_VERSION_1, the device's own <see cref="IVirtioDevice.DeviceFeatures"/>, and
/// VHOST_USER_F_PROTOCOL_FEATURES with the protocol features MQ, REPLY_ACK and, for a device with
/// configuration space, CONFIG and BACKEND_REQ (for configuration-change notifications). EVENT_IDX
/// and INDIRECT_DESC are honoured even when the front end acks them without their being offered,
/// as QEMU 7.2's vhost-user stubs do. Split rings, and packed rings with VhostUserBackendOptions.PackedRings; Linux only.
/// </para>
/// <example>
/// <code>
/// using var backend = new VhostUserBackend(device, "/run/vp/wdt.sock", logger);
/// await backend.RunAsync(stoppingToken);   // returns when stoppingToken is cancelled
/// // qemu-system-x86_64 ... -object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem
/// //   -chardev socket,id=vu,path=/run/vp/wdt.sock -device vhost-user-gpio-pci,chardev=vu
/// </code>
/// </example>
/// </remarks>
public sealed class VhostUserBackend : IDisposable
{
    // VHOST_USER_F_PROTOCOL_FEATURES: a vhost-user bit in the virtio feature word (bit 30).
    internal const ulong ProtocolFeaturesBit = 1UL << 30;

    // Room in the listen queue: connection attempts are accepted and, while a front end is served,
    // closed with a log line; a backlog of 1 would leave them hanging in the kernel's queue instead.
    private const int ListenBacklog = 16;

    // A restarted VMM may reconnect before its old connection's end has been read; the new
    // connection waits this long for the old session to finish before it is refused.
    internal static readonly TimeSpan ReconnectGrace = TimeSpan.FromSeconds(2);

    // Log limits (VhostUserLogLimiter): lines per kind of line and per window
    // (VhostUserBackendOptions.LogWindow, 10 s), per connection and per back end.
    internal const int LogBurstPerConnection = 10;
    internal const int LogBurstPerBackend = 20;

    private readonly Lock _lock = new();
    private VhostUserListener? _listener;
    private bool _running;
    private bool _disposed;

    /// <summary>Creates a back end for <paramref name="device"/>; nothing listens until <see cref="RunAsync"/>.</summary>
    /// <param name="device">The device to serve. It is reset whenever a front end disconnects, and reused for the next one.</param>
    /// <param name="socketPath">Where to listen. A stale socket file left there is replaced; the file is removed when the back end stops.</param>
    /// <param name="logger">Where protocol events and refused messages are logged; null for none.</param>
    /// <param name="options">Further settings (see <see cref="VhostUserBackendOptions"/>); null for the defaults.</param>
    /// <exception cref="PlatformNotSupportedException">Not running on Linux.</exception>
    public VhostUserBackend(IVirtioDevice device, string socketPath, ILogger? logger = null, VhostUserBackendOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new VhostUserBackendOptions();
        ArgumentException.ThrowIfNullOrEmpty(socketPath);
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("vhost-user needs Linux (file descriptor passing, eventfd, mmap).");
        }

        if (device.QueueCount is <= 0 or > 256)
        {
            throw new ArgumentException("The device must have between 1 and 256 queues.", nameof(device));
        }

        Device = device;
        SocketPath = socketPath;
        RawLogger = logger ?? NullLogger.Instance;
        LogWindow = options.LogWindow;
        LogLimiter = new VhostUserLogLimiter(TimeProvider.System, LogBurstPerBackend, LogWindow);
        Logger = new VhostUserLimitedLogger(RawLogger, LogLimiter, shared: null);
        RequireSealedMemory = options.RequireSealedMemory;
        SetupTimeout = options.SetupTimeout;
        IoTimeoutMilliseconds = (long)options.IoTimeout.TotalMilliseconds;
        Rings = new VhostUserRing[device.QueueCount];
        for (int i = 0; i < Rings.Length; i++)
        {
            Rings[i] = new VhostUserRing(i, device.GetMaxQueueSize(i));
        }

        // Split rings, and packed rings when the options allow them (a packed ring's indices and
        // wrap counters travel in SET/GET_VRING_BASE, see VhostUserRing.Base); in-order never.
        ulong notServed = VirtioFeatures.InOrder | (options.PackedRings ? 0 : VirtioFeatures.RingPacked);
        OfferedFeatures = (device.DeviceFeatures & ~notServed) | VirtioFeatures.Version1 | ProtocolFeaturesBit;
        OfferedProtocolFeatures = VhostUserProtocolFeatures.Mq | VhostUserProtocolFeatures.ReplyAck;
        if (device.ConfigSize > 0)
        {
            OfferedProtocolFeatures |= VhostUserProtocolFeatures.Config | VhostUserProtocolFeatures.BackendReq;
        }
    }

    /// <summary>The Unix socket path the back end listens on.</summary>
    public string SocketPath { get; }

    /// <summary>Counters for metrics and tests.</summary>
    public VhostUserStatistics Statistics { get; } = new();

    internal IVirtioDevice Device { get; }

    // Front-end-triggered lines of the back end itself (connections): limited per back end.
    internal VhostUserLimitedLogger Logger { get; }

    // Host-caused lines (Listening, Stopped), and the inner logger of every session's limiter.
    internal ILogger RawLogger { get; }

    // Shared by every session: a front end that connects in a loop gets a fresh session each time.
    internal VhostUserLogLimiter LogLimiter { get; }

    internal TimeSpan LogWindow { get; }

    internal bool RequireSealedMemory { get; }

    internal TimeSpan SetupTimeout { get; }

    // How long a message may stay incomplete, or a reply unread, before the connection is dropped.
    internal long IoTimeoutMilliseconds { get; }

    internal VhostUserRing[] Rings { get; }

    internal ulong OfferedFeatures { get; }

    internal VhostUserProtocolFeatures OfferedProtocolFeatures { get; }

    /// <summary>
    /// Listens on <see cref="SocketPath"/> and serves front ends, one connection at a time, until
    /// <paramref name="cancellationToken"/> is cancelled. Then the current connection is closed
    /// cleanly, the socket file removed, and the task completes.
    /// </summary>
    /// <remarks>
    /// Every back end in the process is served by one event loop thread (epoll), which watches
    /// the listening socket, the connection and the kick eventfds of its rings; the device's
    /// callbacks (<see cref="IVirtioDevice.Notify"/>, configuration access, activation) run on
    /// that thread. The socket is bound before this method first yields.
    /// </remarks>
    /// <param name="cancellationToken">Stops the back end.</param>
    /// <exception cref="InvalidOperationException">The back end is already running.</exception>
    /// <exception cref="SocketException">The socket path cannot be bound.</exception>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_running)
            {
                throw new InvalidOperationException("The back end is already running.");
            }

            _running = true;
        }

        try
        {
            if (File.Exists(SocketPath))
            {
                File.Delete(SocketPath);
            }

            int fd = LinuxIo.UnixListen(SocketPath, ListenBacklog);
            if (fd < 0)
            {
                throw new SocketException((int)ToSocketError(-fd));
            }

            VhostUserLog.Listening(RawLogger, Device.DeviceId, SocketPath);
            var listener = new VhostUserListener(this, VhostUserEventLoop.Shared, fd);
            lock (_lock)
            {
                _listener = listener;
            }

            listener.Start();
            CancellationTokenRegistration registration = cancellationToken.Register(static l => ((VhostUserListener)l!).Stop(), listener);
            try
            {
                await listener.Stopped.ConfigureAwait(false);
            }
            finally
            {
                await registration.DisposeAsync().ConfigureAwait(false);
                lock (_lock)
                {
                    _listener = null;
                }
            }
        }
        finally
        {
            lock (_lock)
            {
                _running = false;
            }
        }
    }

    /// <summary>Stops serving the current connection, if any. <see cref="RunAsync"/> is ended by its token.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _listener?.StopSession();
        }
    }

    // bind/listen errno → the SocketError a Socket would have reported (the common causes).
    private static SocketError ToSocketError(int errno) => errno switch
    {
        LinuxIo.Eaddrinuse => SocketError.AddressAlreadyInUse,
        LinuxIo.Eacces => SocketError.AccessDenied,
        LinuxIo.Enoent or LinuxIo.Enametoolong => SocketError.AddressNotAvailable,
        LinuxIo.Emfile or LinuxIo.Enfile => SocketError.TooManyOpenSockets,
        _ => SocketError.SocketError,
    };

    internal void TryDeleteSocketFile()
    {
        try
        {
            File.Delete(SocketPath);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
