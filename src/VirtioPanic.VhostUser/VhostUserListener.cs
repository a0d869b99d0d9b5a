using Microsoft.Win32.SafeHandles;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Loop;

namespace VirtioPanic.VhostUser;

// One running VhostUserBackend on the event loop: its listening socket (a raw non-blocking
// descriptor, accept4 on readiness), the session it serves, and at most one connection that
// waits for that session to end. Everything here runs on the loop thread, except Stop and
// StopSession, which post to it.
//
// One front end per socket. A connection that arrives while a session is served waits up to the
// reconnect grace for it to end (a restarted VMM may reconnect before its old connection's end
// has been read); if it has not ended by then, the waiting connection is refused (closed, counted,
// logged). While one waits the listener is not watched, so further attempts stay in the kernel's
// listen queue and are taken one at a time, as the accept loop took them.
// The listening socket is closed when the listener stops (StopOnLoop), not by a Dispose: it
// must leave epoll first, on the loop thread.
#pragma warning disable CA1001 // owns a disposable field; closed by StopOnLoop on the loop thread
internal sealed class VhostUserListener : IEventLoopHandler
#pragma warning restore CA1001
{
    // Accepts per readiness event; the rest of the listen queue is taken at the next turn.
    private const int AcceptsPerTurn = 16;

    // After an accept error other than "nothing pending" (EMFILE: out of descriptors), the
    // listener rests this long instead of spinning on a level-triggered readiness it cannot clear.
    private const int AcceptBackoffMilliseconds = 1000;

    private readonly VhostUserBackend _backend;
    private readonly VhostUserEventLoop _loop;
    private readonly SafeFileHandle _socket;
    private readonly int _socketFd;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Loop thread only.
    private ulong _token;
    private bool _watching;
    private bool _stopping;
    private VhostUserSession? _session;
    private SafeFileHandle? _waiting;     // a connection waiting for the session to end
    private long _waitingDue;
    private long _backoffDue;
    private LoopDeadline _timer;          // the earliest deadline queued on the loop

    internal VhostUserListener(VhostUserBackend backend, VhostUserEventLoop loop, int socketFd)
    {
        _backend = backend;
        _loop = loop;
        _socket = new SafeFileHandle(socketFd, ownsHandle: true);
        _socketFd = socketFd;
    }

    // Completes (asynchronously, never on the loop thread) when the listener has stopped: the
    // session closed, the socket closed and its file removed.
    internal Task Stopped => _stopped.Task;

    internal void Start() => _loop.Post(static s => ((VhostUserListener)s!).StartOnLoop(), this);

    // Thread-safe: the listener stops at the loop's next turn.
    internal void Stop() => _loop.Post(static s => ((VhostUserListener)s!).StopOnLoop(), this);

    // Thread-safe: ends the current connection, if any; the listener goes on.
    internal void StopSession() => _loop.Post(static s => ((VhostUserListener)s!)._session?.Close("back end stopping"), this);

    public void OnReady(uint events, int tag)
    {
        for (int i = 0; i < AcceptsPerTurn && _watching; i++)
        {
            int fd = LinuxIo.Accept(_socketFd);
            if (fd < 0)
            {
                if (fd == -LinuxIo.Eintr || fd == -LinuxIo.Econnaborted)
                {
                    continue;
                }

                if (fd != -LinuxIo.Eagain)
                {
                    Unwatch();
                    _backoffDue = Environment.TickCount64 + AcceptBackoffMilliseconds;
                    ScheduleAt(_backoffDue);
                }

                return;
            }

            var client = new SafeFileHandle(fd, ownsHandle: true);
            if (_session is null)
            {
                Serve(client);
            }
            else
            {
                // One front end per socket: wait for the served one to go (reconnect grace).
                _waiting = client;
                _waitingDue = Environment.TickCount64 + (long)VhostUserBackend.ReconnectGrace.TotalMilliseconds;
                Unwatch();
                ScheduleAt(_waitingDue);
                return;
            }
        }
    }

    public void OnTimer(long now)
    {
        _timer.Fired(now);

        if (_stopping)
        {
            return;
        }

        if (_waiting is not null && now >= _waitingDue)
        {
            Refuse();
        }

        if (_backoffDue != 0 && now >= _backoffDue)
        {
            _backoffDue = 0;
        }

        if (_waiting is null && _backoffDue == 0)
        {
            Watch();
        }

        long next = Math.Min(_waiting is null ? long.MaxValue : _waitingDue, _backoffDue == 0 ? long.MaxValue : _backoffDue);
        if (next != long.MaxValue)
        {
            ScheduleAt(next);
        }
    }

    public void OnFault(Exception exception)
    {
        // A bug in accepting: close what waits, keep listening.
        _waiting?.Dispose();
        _waiting = null;
    }

    // Called by the session at the end of its Close.
    internal void OnSessionEnded(VhostUserSession session)
    {
        if (_session != session)
        {
            return;
        }

        _session = null;
        _backend.Statistics.OnConnectionClosed();
        VhostUserMetrics.ActiveConnections.Add(-1);
        if (_waiting is { } next && !_stopping)
        {
            _waiting = null;
            Serve(next);
            if (_backoffDue == 0)
            {
                Watch();
            }
        }
    }

    private void StartOnLoop()
    {
        if (_stopping)
        {
            return;
        }

        Watch();
    }

    private void StopOnLoop()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        try
        {
            Unwatch();
            _socket.Dispose();
            _session?.Close("back end stopping");
            _waiting?.Dispose();
            _waiting = null;
            _backend.Logger.Flush();
            _backend.TryDeleteSocketFile();
            VhostUserLog.Stopped(_backend.RawLogger, _backend.SocketPath);
        }
        finally
        {
            _loop.CancelTimers(this);
            _stopped.TrySetResult();
        }
    }

    // A session is being served (loop thread).
    internal bool Serving => _session is not null;

    // Loop thread (and the fuzz harness, on a driven loop): serves an accepted connection.
    internal void Serve(SafeFileHandle client)
    {
        long connection = _backend.Statistics.ConnectionsAccepted + 1;
        _backend.Statistics.OnConnectionAccepted();
        VhostUserMetrics.Connections.Add(1, VhostUserMetrics.Accepted);
        VhostUserMetrics.ActiveConnections.Add(1);
        VhostUserLog.Connected(_backend.Logger, connection);
        var session = new VhostUserSession(_backend, this, _loop, client, connection);
        _session = session;
        _ = session.Start();
    }

    private void Refuse()
    {
        _backend.Statistics.OnConnectionRefused();
        VhostUserMetrics.Connections.Add(1, VhostUserMetrics.Refused);
        VhostUserLog.ConnectionRefused(_backend.Logger, _backend.Statistics.ConnectionsAccepted);
        _waiting!.Dispose();
        _waiting = null;
    }

    private void Watch()
    {
        if (_watching || _stopping)
        {
            return;
        }

        int result = _token == 0
            ? _loop.Register(_socketFd, LinuxIo.EpollIn, this, 0, deferred: false, out _token)
            : _loop.Modify(_token, _socketFd, LinuxIo.EpollIn);
        _watching = result == 0;
    }

    // Stops watching the listening socket without removing it from epoll (EPOLL_CTL_MOD to no
    // events; a listening socket reports no EPOLLHUP), or removes it when the listener stops.
    private void Unwatch()
    {
        if (_token == 0)
        {
            return;
        }

        if (_stopping)
        {
            _loop.Unregister(_token, _socketFd);
            _token = 0;
        }
        else
        {
            _ = _loop.Modify(_token, _socketFd, 0);
        }

        _watching = false;
    }

    private void ScheduleAt(long due) => _timer.ScheduleAt(_loop, this, due);
}
