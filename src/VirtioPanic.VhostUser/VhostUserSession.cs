using System.Diagnostics;
using Microsoft.Win32.SafeHandles;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Loop;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser;

// Design: one front-end connection, a state machine driven by the event loop.
//
// Every call into a session is on the loop thread (Loop/VhostUserEventLoop.cs, shared by every
// back end in the process): readiness of its socket, of its rings' kick eventfds, and its
// deadlines. Nothing here blocks. A message is reassembled across readiness events in a buffer
// rented only while it is incomplete or being handled (VhostUserSession.Io.cs); a reply that the
// socket does not take at once waits in a bounded out buffer for EPOLLOUT, and input is not read
// meanwhile. Messages are handled before kicks (the loop's two passes), and a session with unread
// input defers its kicks, so a kick after a message that reconfigured a ring is served in the new
// set-up. Control messages and queue processing never race: both run on the loop thread, so a
// ring is never reconfigured while the device is inside Notify. Device threads of their own
// (timers, workers) only reach back through the context: call/err eventfd writes, guarded per
// ring (VhostUserRing), CONFIG_CHANGE_MSG, guarded by _channelLock, and the needs-reset flag.
//
// Everything the front end sends is untrusted: sizes, indices, addresses and descriptor counts
// are checked before use, and the session never throws for front-end input. A front end never
// waits for ever (the reply rule, in VhostUserSession.Messages.cs): a refused request is answered
// with a failure when REPLY_ACK asks for one; a refused request with a reply of its own gets the
// protocol's failure reply where one exists and otherwise ends the connection. Framing errors
// (bad version, oversized payload, truncated stream) end it too, and so do the deadlines the
// loop's timer checks: no set-up (SET_OWNER) within VhostUserBackendOptions.SetupTimeout, a
// message left incomplete or a reply left unread for the I/O timeout.
//
// Every log line goes through a VhostUserLimitedLogger (the session's limiter and the back
// end's), so a front end that repeats a message cannot flood the log.
//
// Teardown (end of stream, a framing error, a deadline, the back end stopping) removes every
// descriptor from epoll before it is closed, resets the device, resets every ring, unmaps the
// memory table and closes every descriptor the front end sent, so the back end can serve the
// next connection with nothing left over.
internal sealed partial class VhostUserSession : IEventLoopHandler
{
    // The tag of the session's socket registration; a kick registration's tag is its ring index.
    private const int SocketTag = -1;

    // Messages read per readiness event before the loop turns to other sessions; the rest is read
    // at the next turn (posted), and this session's kicks wait for it.
    private const int MessagesPerTurn = 16;

    private readonly VhostUserBackend _backend;
    private readonly VhostUserListener _listener;
    private readonly VhostUserEventLoop _loop;
    private readonly IVirtioDevice _device;
    private readonly VhostUserRing[] _rings;
    private readonly VhostUserLimitedLogger _logger;
    private readonly VhostUserStatistics _statistics;
    private readonly SafeFileHandle _socket;
    private readonly int _socketFd;
    private readonly long _connection;
    private readonly long _setupDeadline; // Environment.TickCount64 by which SET_OWNER must arrive

    private readonly SafeFileHandle?[] _files = new SafeFileHandle?[LinuxIo.MaxFdsPerMessage];
    private int _fileCount;

    private ulong _socketToken;
    private uint _socketInterest;
    private bool _closed;
    private bool _kicksDeferred;          // some ring's KickDeferred is set
    private LoopDeadline _timer;          // the earliest deadline queued on the loop

    private VhostUserMemoryTable? _memory;
    private ulong _features;              // as acked, including VHOST_USER_F_PROTOCOL_FEATURES
    private bool _featuresAcked;
    private VhostUserProtocolFeatures _protocolFeatures;
    private VhostUserDeviceContext? _context;

    // Set by device threads (SetNeedsReset) and the loop thread; read by the loop thread before
    // each Notify. volatile: a set is seen by the next kick the loop handles; a kick already
    // inside Notify finishes (the device stops its own processing when it asks for a reset).
    private volatile bool _needsReset;
    private long _messages;
    private bool _owned;                  // SET_OWNER seen: set-up complete, no set-up deadline
    private bool _unsealedLogged;
    private string? _closeReason;         // set by a handler that must end the connection

    private readonly Lock _channelLock = new();
    private SafeFileHandle? _channel;      // back-end request channel (SET_BACKEND_REQ_FD)

    internal VhostUserSession(VhostUserBackend backend, VhostUserListener listener, VhostUserEventLoop loop, SafeFileHandle socket, long connection)
    {
        _backend = backend;
        _listener = listener;
        _loop = loop;
        _device = backend.Device;
        _rings = backend.Rings;
        _logger = new VhostUserLimitedLogger(
            backend.RawLogger,
            new VhostUserLogLimiter(TimeProvider.System, VhostUserBackend.LogBurstPerConnection, backend.LogWindow),
            backend.LogLimiter);
        _statistics = backend.Statistics;
        _socket = socket;
        _socketFd = (int)socket.DangerousGetHandle();
        _connection = connection;
        _setupDeadline = Environment.TickCount64 + (long)backend.SetupTimeout.TotalMilliseconds;
    }

    internal bool IsClosed => _closed;

    // Loop thread: starts watching the socket and the set-up deadline. False when the socket
    // cannot be watched (the session is then closed).
    internal bool Start()
    {
        int result = _loop.Register(_socketFd, LinuxIo.EpollIn, this, SocketTag, deferred: false, out _socketToken);
        if (result != 0)
        {
            Close($"the connection cannot be watched (epoll_ctl errno {-result})");
            return false;
        }

        _socketInterest = LinuxIo.EpollIn;
        ScheduleAt(_setupDeadline);
        return true;
    }

    private ulong VirtioFeatures => _features & ~VhostUserBackend.ProtocolFeaturesBit;

    private bool PackedRings => (VirtioFeatures & Virtio.Device.VirtioFeatures.RingPacked) != 0;

    private bool ProtocolFeaturesAcked => (_features & VhostUserBackend.ProtocolFeaturesBit) != 0;

    // Without VHOST_USER_F_PROTOCOL_FEATURES a ring is enabled from its start (the vhost-user
    // spec; no SET_VRING_ENABLE comes). User-Mode Linux acks features without that bit when the
    // driver refuses one the device offered.
    private bool IsEnabled(VhostUserRing ring) => ring.Enabled || !ProtocolFeaturesAcked;

    public void OnReady(uint events, int tag)
    {
        if (_closed)
        {
            return;
        }

        if (tag == SocketTag)
        {
            OnSocket(events);
        }
        else if ((uint)tag < (uint)_rings.Length)
        {
            OnKick(_rings[tag]);
        }
    }

    public void OnTimer(long now)
    {
        _timer.Fired(now);

        if (_closed)
        {
            return;
        }

        if (!_owned && now >= _setupDeadline)
        {
            string reason = $"no set-up (SET_OWNER) within {_backend.SetupTimeout.TotalSeconds:0.###} s of connecting";
            VhostUserLog.ConnectionDropped(_logger, _connection, reason);
            Close(reason);
            return;
        }

        if (_ioDeadline != 0 && now >= _ioDeadline)
        {
            string reason = _outLength > 0
                ? $"front end did not read a reply for {_backend.IoTimeoutMilliseconds} ms"
                : $"front end sent an incomplete message and nothing more for {_backend.IoTimeoutMilliseconds} ms";
            VhostUserLog.ConnectionDropped(_logger, _connection, reason);
            Close(reason);
            return;
        }

        RescheduleTimer();
    }

    public void OnFault(Exception exception)
    {
        if (_closed)
        {
            return;
        }

        string reason = $"internal error ({exception.GetType().Name}: {exception.Message})";
        VhostUserLog.ConnectionDropped(_logger, _connection, reason);
        Close(reason);
    }

    // Loop thread: ends the connection (once): every descriptor leaves epoll before it is closed,
    // then the teardown, then the listener serves the next connection.
    internal void Close(string reason)
    {
        if (_closed)
        {
            return;
        }

        _closed = true;
        try
        {
            if (_socketToken != 0)
            {
                _loop.Unregister(_socketToken, _socketFd);
            }

            foreach (VhostUserRing ring in _rings)
            {
                DetachKick(ring);
            }

            Teardown(reason);
        }
        finally
        {
            ReleaseBuffers();
            _socket.Dispose();
            _loop.CancelTimers(this);
            _listener.OnSessionEnded(this);
        }
    }

    // Called from device threads through the context.
    internal void OnSignalUsedBuffers(VhostUserRing ring)
    {
        if (ring.SignalCall())
        {
            _statistics.OnUsedBufferNotification();
        }
    }

    internal void OnNeedsReset()
    {
        if (_needsReset)
        {
            return;
        }

        _needsReset = true;
        VhostUserLog.DeviceNeedsReset(_logger, _device.DeviceId);
        foreach (VhostUserRing ring in _rings)
        {
            _ = ring.SignalErr();
        }
    }

    internal void OnConfigChange()
    {
        lock (_channelLock)
        {
            if (_channel is null || (_protocolFeatures & VhostUserProtocolFeatures.Config) == 0)
            {
                VhostUserLog.ConfigChangeNotForwarded(_logger);
                return;
            }

            Span<byte> message = stackalloc byte[VhostUserWire.HeaderSize];
            VhostUserWire.WriteHeader(message, (uint)VhostUserBackendRequest.ConfigChangeMsg, VhostUserWire.Version, 0);
            // Non-blocking: a device thread must not stall on a front end that stopped reading.
            int sent = LinuxIo.SendWithFds((int)_channel.DangerousGetHandle(), message, [], dontWait: true);
            if (sent == message.Length)
            {
                VhostUserLog.ConfigChangeSent(_logger);
            }
            else
            {
                VhostUserLog.ConfigChangeFailed(_logger, sent < 0 ? -sent : 0);
            }
        }
    }

    private bool Servable(VhostUserRing ring) => _context is not null && !_needsReset && ring.Live && IsEnabled(ring);

    // A kick eventfd is watched edge-triggered and never read: every write to an eventfd wakes
    // its waiters, so each kick is an edge (fs/eventfd.c, eventfd_write), and a read per kick
    // would be one more system call on the hot path for nothing (the counter only grows; at one
    // per kick it cannot reach its 2^64 - 2 limit). vhost-user kick descriptors are eventfds
    // (vhost-user.rst, SET_VRING_KICK). A kick that must wait for unread messages is remembered
    // (KickDeferred) and served once the input is read, since no new edge will come for it.
    private void OnKick(VhostUserRing ring)
    {
        if (_inputPending)
        {
            // Unread messages came before this kick: they are handled first.
            ring.KickDeferred = true;
            _kicksDeferred = true;
            return;
        }

        if (!Servable(ring))
        {
            // Set from a device thread (needs reset) since the kicks were last synchronised.
            SyncKicks();
            return;
        }

        _statistics.OnKick();
        NotifyDevice(ring);
    }

    // The input has been read: serve the kicks that waited for it.
    private void ServeDeferredKicks()
    {
        _kicksDeferred = false;
        foreach (VhostUserRing ring in _rings)
        {
            if (ring.KickDeferred && !_closed)
            {
                ring.KickDeferred = false;
                OnKick(ring);
            }
        }
    }

    // Watches exactly the kick eventfds of the rings that are served now (started, enabled, the
    // device active and not needing a reset), as the poll set of each turn did before the loop.
    // Called after every message and whenever a kick finds its ring no longer served.
    private void SyncKicks()
    {
        if (_closed)
        {
            return;
        }

        foreach (VhostUserRing ring in _rings)
        {
            bool wanted = Servable(ring) && ring.Kick is not null;
            if (wanted && ring.KickToken == 0 && !ring.KickUnwatchable)
            {
                int fd = (int)ring.Kick!.DangerousGetHandle();
                // Edge-triggered (see OnKick); a kick already pending is reported once at registration.
                int result = _loop.Register(fd, LinuxIo.EpollIn | LinuxIo.EpollEt, this, ring.Index, deferred: true, out ulong token);
                if (result == 0)
                {
                    ring.KickToken = token;
                    ring.KickFd = fd;
                }
                else
                {
                    // Not an eventfd epoll can watch (a regular file): the ring is never kicked.
                    ring.KickUnwatchable = true;
                    VhostUserLog.RingStartFailed(_logger, ring.Index, $"its kick descriptor cannot be watched (epoll_ctl errno {-result})");
                }
            }
            else if (!wanted && ring.KickToken != 0)
            {
                DetachKick(ring);
            }
        }
    }

    // Removes a ring's kick eventfd from epoll; call it before the descriptor is replaced or closed.
    private void DetachKick(VhostUserRing ring)
    {
        if (ring.KickToken != 0)
        {
            _loop.Unregister(ring.KickToken, ring.KickFd);
            ring.KickToken = 0;
            ring.KickFd = -1;
        }
    }

    private void ScheduleAt(long due) => _timer.ScheduleAt(_loop, this, due);

    private void RescheduleTimer()
    {
        long next = long.MaxValue;
        if (!_owned)
        {
            next = _setupDeadline;
        }

        if (_ioDeadline != 0)
        {
            next = Math.Min(next, _ioDeadline);
        }

        if (next != long.MaxValue)
        {
            ScheduleAt(next);
        }
    }

    private void NotifyDevice(VhostUserRing ring)
    {
        if (_context is null || _needsReset || !ring.Live || !IsEnabled(ring))
        {
            return;
        }

        try
        {
            _device.Notify(ring.Index);
        }
        catch (Exception e)
        {
            VhostUserMetrics.DeviceFault(nameof(IVirtioDevice.Notify));
            VhostUserLog.DeviceFault(_logger, e, _device.DeviceId, nameof(IVirtioDevice.Notify));
            OnNeedsReset();
        }
    }

    private void Teardown(string reason)
    {
        StopDevice("front end disconnected");
        foreach (VhostUserRing ring in _rings)
        {
            DetachKick(ring);
            ring.Clear();
        }

        _memory?.Dispose();
        _memory = null;
        lock (_channelLock)
        {
            _channel?.Dispose();
            _channel = null;
        }

        CloseUnclaimedFiles();
        VhostUserLog.Disconnected(_logger, _connection, _messages, reason);
        _logger.Flush();

        Debug.Assert(_context is null);
    }

    private void CloseUnclaimedFiles()
    {
        for (int i = 0; i < _fileCount; i++)
        {
            _files[i]?.Dispose();
            _files[i] = null;
        }

        _fileCount = 0;
    }

    // Takes ownership of the i-th descriptor of the current message.
    private SafeFileHandle TakeFile(int index)
    {
        SafeFileHandle file = _files[index]!;
        _files[index] = null;
        return file;
    }

    private enum ReadResult
    {
        Message,
        NoMessage,
        EndOfStream,
        Fatal,
    }
}
