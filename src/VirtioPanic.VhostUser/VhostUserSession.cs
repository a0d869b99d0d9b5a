using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser;

// Design: one front-end connection, served by one thread.
//
// The session thread polls the socket, the kick eventfds of the started and enabled rings, and a
// wake eventfd (cancellation). It reads and answers messages, and turns kicks into
// IVirtioDevice.Notify calls, so control messages and queue processing never race: a ring is
// never reconfigured while the device is inside Notify on this thread. Device threads of their
// own (timers, workers) only reach back through the context: call/err eventfd writes, guarded
// per ring (VhostUserRing), and CONFIG_CHANGE_MSG, guarded by _channelLock.
//
// Everything the front end sends is untrusted: sizes, indices, addresses and descriptor counts
// are checked before use, and the session never throws for front-end input. A front end never
// waits for ever (the reply rule, in VhostUserSession.Messages.cs): a refused request is answered
// with a failure when REPLY_ACK asks for one; a refused request with a reply of its own gets the
// protocol's failure reply where one exists and otherwise ends the connection. Framing errors
// (bad version, oversized payload, truncated stream) end it too, and so does a connection that
// has not set itself up (SET_OWNER) within VhostUserBackendOptions.SetupTimeout.
//
// Every log line goes through a VhostUserLimitedLogger (the session's limiter and the back
// end's), so a front end that repeats a message cannot flood the log.
//
// Teardown (end of stream, a framing error, cancellation) resets the device, resets every ring,
// unmaps the memory table and closes every descriptor the front end sent, so the back end can
// accept the next connection with nothing left over.
internal sealed partial class VhostUserSession : IDisposable
{
    private const int IoTimeoutMilliseconds = 5000;

    private readonly VhostUserBackend _backend;
    private readonly IVirtioDevice _device;
    private readonly VhostUserRing[] _rings;
    private readonly VhostUserLimitedLogger _logger;
    private readonly VhostUserStatistics _statistics;
    private readonly SafeHandle _socket;
    private readonly int _socketFd;
    private readonly SafeFileHandle _wake;
    private readonly long _connection;

    private readonly byte[] _header = new byte[VhostUserWire.HeaderSize];
    private readonly byte[] _payload = new byte[VhostUserWire.MaxPayloadSize];
    private readonly byte[] _reply = new byte[VhostUserWire.HeaderSize + VhostUserWire.MaxPayloadSize];
    private readonly int[] _receivedFds = new int[LinuxIo.MaxFdsPerMessage];
    private readonly SafeFileHandle?[] _files = new SafeFileHandle?[LinuxIo.MaxFdsPerMessage];
    private int _fileCount;

    private readonly LinuxIo.PollFd[] _pollFds;
    private readonly int[] _pollRing;

    private VhostUserMemoryTable? _memory;
    private ulong _features;              // as acked, including VHOST_USER_F_PROTOCOL_FEATURES
    private bool _featuresAcked;
    private VhostUserProtocolFeatures _protocolFeatures;
    private VhostUserDeviceContext? _context;
    private volatile bool _needsReset;
    private long _messages;
    private bool _owned;                  // SET_OWNER seen: set-up complete, no set-up deadline
    private bool _unsealedLogged;
    private string? _closeReason;         // set by a handler that must end the connection
    private readonly long _setupDeadline; // Environment.TickCount64 by which SET_OWNER must arrive

    private readonly Lock _channelLock = new();
    private SafeFileHandle? _channel;      // back-end request channel (SET_BACKEND_REQ_FD)

    internal VhostUserSession(VhostUserBackend backend, SafeHandle socket, long connection)
    {
        _backend = backend;
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
        int wake = LinuxIo.EventFd(0, LinuxIo.EfdCloexec | LinuxIo.EfdNonblock);
        if (wake < 0)
        {
            throw new InvalidOperationException("eventfd failed");
        }

        _wake = new SafeFileHandle(wake, ownsHandle: true);
        _pollFds = new LinuxIo.PollFd[2 + _rings.Length];
        _pollRing = new int[2 + _rings.Length];
    }

    private ulong VirtioFeatures => _features & ~VhostUserBackend.ProtocolFeaturesBit;

    private bool PackedRings => (VirtioFeatures & Virtio.Device.VirtioFeatures.RingPacked) != 0;

    private bool ProtocolFeaturesAcked => (_features & VhostUserBackend.ProtocolFeaturesBit) != 0;

    // Without VHOST_USER_F_PROTOCOL_FEATURES a ring is enabled from its start (the vhost-user
    // spec; no SET_VRING_ENABLE comes). User-Mode Linux acks features without that bit when the
    // driver refuses one the device offered.
    private bool IsEnabled(VhostUserRing ring) => ring.Enabled || !ProtocolFeaturesAcked;

    // Wakes the session thread so that it ends (cancellation, back end disposal). Thread-safe.
    internal void Stop()
    {
        Span<byte> one = [1, 0, 0, 0, 0, 0, 0, 0];
        if (!_wake.IsClosed)
        {
            _ = LinuxIo.Write((int)_wake.DangerousGetHandle(), one);
        }
    }

    // Serves the connection until the front end goes away, a framing error, or Stop.
    internal void Run()
    {
        string reason = "front end closed the connection";
        try
        {
            while (true)
            {
                int count = BuildPollSet();
                int timeout = -1;
                if (!_owned)
                {
                    long left = _setupDeadline - Environment.TickCount64;
                    if (left <= 0)
                    {
                        reason = $"no set-up (SET_OWNER) within {_backend.SetupTimeout.TotalSeconds:0.###} s of connecting";
                        VhostUserLog.ConnectionDropped(_logger, _connection, reason);
                        break;
                    }

                    timeout = (int)Math.Min(left, int.MaxValue);
                }

                int ready = LinuxIo.Poll(_pollFds.AsSpan(0, count), timeout);
                if (ready == -LinuxIo.Eintr || ready == 0)
                {
                    continue;
                }

                if (ready < 0)
                {
                    reason = $"poll failed (errno {-ready})";
                    break;
                }

                if (_pollFds[0].Revents != 0)
                {
                    reason = "back end stopping";
                    break;
                }

                // Messages before kicks: a front end that reconfigures a ring (a new call fd, a new
                // memory table) and then kicks expects the kick to be served in the new setup. Kick
                // eventfds are level-triggered, so a kick seen now is still pending at the next poll.
                short socketEvents = _pollFds[1].Revents;
                if (socketEvents == 0)
                {
                    for (int i = 2; i < count; i++)
                    {
                        if (_pollFds[i].Revents != 0)
                        {
                            OnKick(_rings[_pollRing[i]]);
                        }
                    }

                    continue;
                }

                if ((socketEvents & LinuxIo.PollNval) != 0)
                {
                    reason = "socket closed";
                    break;
                }

                ReadResult result = ReadMessage(out VhostUserRequest request, out uint flags, out int size, out string? error);
                if (result == ReadResult.NoMessage)
                {
                    continue;
                }

                if (result == ReadResult.EndOfStream)
                {
                    break;
                }

                if (result == ReadResult.Fatal)
                {
                    reason = error ?? "protocol error";
                    VhostUserLog.ConnectionDropped(_logger, _connection, reason);
                    break;
                }

                _messages++;
                VhostUserLog.MessageReceived(_logger, request, (uint)request, flags, size, _fileCount);
                try
                {
                    Dispatch(request, flags, _payload.AsSpan(0, size));
                }
                finally
                {
                    CloseUnclaimedFiles();
                }

                if (_replyFailed || _closeReason is not null)
                {
                    reason = _closeReason ?? "could not send a reply";
                    VhostUserLog.ConnectionDropped(_logger, _connection, reason);
                    break;
                }
            }
        }
        finally
        {
            Teardown(reason);
        }
    }

    public void Dispose()
    {
        _wake.Dispose();
        lock (_channelLock)
        {
            _channel?.Dispose();
            _channel = null;
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

    private int BuildPollSet()
    {
        _pollFds[0] = new LinuxIo.PollFd { Fd = (int)_wake.DangerousGetHandle(), Events = LinuxIo.PollIn };
        _pollFds[1] = new LinuxIo.PollFd { Fd = _socketFd, Events = LinuxIo.PollIn };
        int count = 2;
        if (_context is not null && !_needsReset)
        {
            foreach (VhostUserRing ring in _rings)
            {
                if (ring.Live && IsEnabled(ring) && ring.Kick is { } kick)
                {
                    _pollRing[count] = ring.Index;
                    _pollFds[count++] = new LinuxIo.PollFd { Fd = (int)kick.DangerousGetHandle(), Events = LinuxIo.PollIn };
                }
            }
        }

        return count;
    }

    private void OnKick(VhostUserRing ring)
    {
        // Kick eventfds are non-blocking (QEMU creates them so, and SET_VRING_KICK makes sure):
        // drain the counter; EAGAIN only means another wake-up already consumed it.
        Span<byte> counter = stackalloc byte[sizeof(ulong)];
        if (ring.Kick is { } kick)
        {
            _ = LinuxIo.Read((int)kick.DangerousGetHandle(), counter);
        }

        _statistics.OnKick();
        NotifyDevice(ring);
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
