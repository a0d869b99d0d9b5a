using System.Buffers;
using Microsoft.Win32.SafeHandles;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Protocol;

namespace VirtioPanic.VhostUser;

// Framing on a non-blocking socket, driven by readiness: a message (header, descriptors, payload)
// is reassembled across as many readiness events as the front end takes, in a buffer rented from
// the pool when its first byte arrives and returned when it has been handled, so an idle session
// holds no message buffer. Descriptors (SCM_RIGHTS) ride on the first byte of the message and are
// adopted with whatever recvmsg brings. Replies are sent non-blocking; what the socket does not
// take waits in an out buffer (rented too, at most one reply: input is not read while it waits)
// and goes on EPOLLOUT. A front end that stops mid-message or stops reading its replies is
// dropped when the I/O deadline passes (VhostUserBackendOptions.IoTimeout, renewed by every
// chunk that moves), checked by the loop's timer rather than a blocking poll.
internal sealed partial class VhostUserSession
{
    private const int MessageBufferSize = VhostUserWire.HeaderSize + VhostUserWire.MaxPayloadSize;

    private bool _replyFailed;
    private bool _truncatedFds;

    // The message being assembled: rented while any byte of it is here; _rxFilled bytes so far.
    private byte[]? _rx;
    private int _rxFilled;

    // A reply the socket did not take yet: bytes [_outSent, _outLength) of _out.
    private byte[]? _out;
    private int _outSent;
    private int _outLength;

    // Environment.TickCount64 by which the incomplete message or the waiting reply must move; 0: none.
    private long _ioDeadline;

    // Input may be waiting that was not read this turn (the per-turn bound, or a reply waiting):
    // this session's kicks wait until it has been read (messages before kicks).
    private bool _inputPending;

    private void OnSocket(uint events)
    {
        if (_outLength > 0)
        {
            if (!TryFlush())
            {
                VhostUserLog.ConnectionDropped(_logger, _connection, "could not send a reply");
                Close("could not send a reply");
                return;
            }

            if (_outLength > 0)
            {
                return;   // still waiting for EPOLLOUT; input stays unread meanwhile
            }
        }

        // EPOLLIN, or EPOLLHUP/EPOLLERR: recvmsg tells which (data still queued, end of stream, an error).
        _ = events;
        ReadMessages();
    }

    private void ReadMessages()
    {
        for (int turn = 0; turn < MessagesPerTurn; turn++)
        {
            ReadResult result = ReadMessage(out VhostUserRequest request, out uint flags, out int size, out string? error);
            switch (result)
            {
                case ReadResult.NoMessage:
                    _inputPending = false;
                    if (_rxFilled == 0)
                    {
                        ReturnRx();
                    }

                    if (_kicksDeferred)
                    {
                        ServeDeferredKicks();
                    }

                    return;
                case ReadResult.EndOfStream:
                    Close("front end closed the connection");
                    return;
                case ReadResult.Fatal:
                    string reason = error ?? "protocol error";
                    VhostUserLog.ConnectionDropped(_logger, _connection, reason);
                    Close(reason);
                    return;
            }

            _messages++;
            VhostUserLog.MessageReceived(_logger, request, (uint)request, flags, size, _fileCount);
            try
            {
                Dispatch(request, flags, _rx!.AsSpan(VhostUserWire.HeaderSize, size));
            }
            finally
            {
                CloseUnclaimedFiles();
                _rxFilled = 0;
                ReturnRx();
            }

            if (_replyFailed || _closeReason is not null)
            {
                string reason = _closeReason ?? "could not send a reply";
                VhostUserLog.ConnectionDropped(_logger, _connection, reason);
                Close(reason);
                return;
            }

            SyncKicks();
            if (_outLength > 0)
            {
                // The reply waits for EPOLLOUT; no more input until it is gone.
                _inputPending = true;
                return;
            }
        }

        // The per-turn bound: more may wait (or not: level-triggered readiness would not report
        // an empty socket again, and the kicks deferred meanwhile would wait for ever), so read
        // on at the next turn, before its epoll_wait.
        _inputPending = true;
        _loop.Post(static s => ((VhostUserSession)s!).ResumeReading(), this);
    }

    private void ResumeReading()
    {
        if (!_closed && _outLength == 0)
        {
            ReadMessages();
        }
    }

    // Reads what the socket has of the current message. Message: complete in _rx (header, then
    // `size` payload bytes). NoMessage: nothing more now (the message, if begun, stays in _rx).
    private ReadResult ReadMessage(out VhostUserRequest request, out uint flags, out int size, out string? error)
    {
        request = VhostUserRequest.None;
        flags = 0;
        size = 0;
        error = null;
        bool moved = false;
        if (_rxFilled == 0)
        {
            _truncatedFds = false;
        }

        _rx ??= ArrayPool<byte>.Shared.Rent(MessageBufferSize);
        Span<int> received = stackalloc int[LinuxIo.MaxFdsPerMessage];
        while (true)
        {
            int wanted = VhostUserWire.HeaderSize;
            if (_rxFilled >= VhostUserWire.HeaderSize)
            {
                // The header was checked when it completed: its size is within MaxPayloadSize.
                wanted += (int)VhostUserWire.ReadUInt32(_rx!, 8);
            }

            if (_rxFilled == wanted)
            {
                break;
            }

            int n = LinuxIo.ReceiveWithFds(_socketFd, _rx.AsSpan(_rxFilled, wanted - _rxFilled), received, out int fdCount, out bool truncated, dontWait: true);
            AdoptFiles(received[..fdCount]);
            _truncatedFds |= truncated;
            if (n > 0)
            {
                bool headerDone = _rxFilled < VhostUserWire.HeaderSize && _rxFilled + n >= VhostUserWire.HeaderSize;
                _rxFilled += n;
                moved = true;
                if (headerDone && !CheckHeader(out error))
                {
                    return ReadResult.Fatal;
                }

                continue;
            }

            if (n == -LinuxIo.Eintr)
            {
                continue;
            }

            if (n == 0)
            {
                if (_rxFilled == 0)
                {
                    return ReadResult.EndOfStream;
                }

                error = "front end closed the connection in the middle of a message";
                return ReadResult.Fatal;
            }

            if (n != -LinuxIo.Eagain)
            {
                error = $"recvmsg failed (errno {-n})";
                return ReadResult.Fatal;
            }

            if (_rxFilled > 0 && (moved || _ioDeadline == 0))
            {
                // Incomplete: the rest must come within the I/O timeout of the last progress.
                _ioDeadline = Environment.TickCount64 + _backend.IoTimeoutMilliseconds;
                ScheduleAt(_ioDeadline);
            }

            return ReadResult.NoMessage;
        }

        _ioDeadline = 0;
        request = (VhostUserRequest)VhostUserWire.ReadUInt32(_rx!, 0);
        flags = VhostUserWire.ReadUInt32(_rx!, 4);
        size = _rxFilled - VhostUserWire.HeaderSize;
        if (_truncatedFds)
        {
            // More descriptors than any message carries: the extras were closed on receipt; the
            // message itself is refused by the handler's descriptor-count check.
            _fileCount = Math.Min(_fileCount, LinuxIo.MaxFdsPerMessage);
        }

        return ReadResult.Message;
    }

    private bool CheckHeader(out string? error)
    {
        error = null;
        uint code = VhostUserWire.ReadUInt32(_rx!, 0);
        uint flags = VhostUserWire.ReadUInt32(_rx!, 4);
        uint announced = VhostUserWire.ReadUInt32(_rx!, 8);
        if ((flags & VhostUserWire.VersionMask) != VhostUserWire.Version)
        {
            error = $"message {code} has protocol version {flags & VhostUserWire.VersionMask}, expected {VhostUserWire.Version}";
            return false;
        }

        if (announced > VhostUserWire.MaxPayloadSize)
        {
            // Not read: skipping an arbitrary amount would let a peer keep us busy; the stream
            // cannot be re-synchronised either, so the connection ends.
            error = $"message {code} announces a {announced}-byte payload (limit {VhostUserWire.MaxPayloadSize})";
            return false;
        }

        return true;
    }

    private void AdoptFiles(ReadOnlySpan<int> received)
    {
        // Wrap every received descriptor at once, so each is closed exactly once whatever happens next.
        foreach (int fd in received)
        {
            if (_fileCount < _files.Length)
            {
                _files[_fileCount++] = new SafeFileHandle(fd, ownsHandle: true);
            }
            else
            {
                _ = LinuxIo.Close(fd);
                _truncatedFds = true;
            }
        }
    }

    private void SendReply(VhostUserRequest request, ReadOnlySpan<byte> payload)
    {
        if (_replyFailed)
        {
            return;
        }

        Span<byte> message = stackalloc byte[VhostUserWire.HeaderSize + payload.Length];
        VhostUserWire.WriteHeader(message, (uint)request, VhostUserWire.Version | VhostUserWire.ReplyFlag, payload.Length);
        payload.CopyTo(message[VhostUserWire.HeaderSize..]);
        ReadOnlySpan<byte> remaining = message;
        while (_outLength == 0 && !remaining.IsEmpty)
        {
            int sent = LinuxIo.SendWithFds(_socketFd, remaining, [], dontWait: true);
            if (sent > 0)
            {
                remaining = remaining[sent..];
                continue;
            }

            if (sent == -LinuxIo.Eintr)
            {
                continue;
            }

            if (sent != -LinuxIo.Eagain)
            {
                _replyFailed = true;
                return;
            }

            break;
        }

        if (remaining.IsEmpty)
        {
            return;
        }

        // The socket is full: keep the rest (one reply per message; input waits meanwhile, so
        // this holds at most one message's reply) and send it on EPOLLOUT.
        _out ??= ArrayPool<byte>.Shared.Rent(MessageBufferSize);
        if (_outLength + remaining.Length > _out.Length)
        {
            _replyFailed = true;
            return;
        }

        remaining.CopyTo(_out.AsSpan(_outLength));
        _outLength += remaining.Length;
        SetSocketInterest(LinuxIo.EpollOut);
        _ioDeadline = Environment.TickCount64 + _backend.IoTimeoutMilliseconds;
        ScheduleAt(_ioDeadline);
    }

    // Sends what waits in the out buffer; false on a send error. When all is sent, input is read again.
    private bool TryFlush()
    {
        bool moved = false;
        while (_outSent < _outLength)
        {
            int sent = LinuxIo.SendWithFds(_socketFd, _out.AsSpan(_outSent, _outLength - _outSent), [], dontWait: true);
            if (sent > 0)
            {
                _outSent += sent;
                moved = true;
                continue;
            }

            if (sent == -LinuxIo.Eintr)
            {
                continue;
            }

            if (sent != -LinuxIo.Eagain)
            {
                return false;
            }

            if (moved)
            {
                _ioDeadline = Environment.TickCount64 + _backend.IoTimeoutMilliseconds;
                ScheduleAt(_ioDeadline);
            }

            return true;
        }

        _outSent = 0;
        _outLength = 0;
        ReturnOut();
        _ioDeadline = 0;
        SetSocketInterest(LinuxIo.EpollIn);
        return true;
    }

    private void SetSocketInterest(uint events)
    {
        if (_socketInterest != events && !_closed)
        {
            _socketInterest = events;
            _ = _loop.Modify(_socketToken, _socketFd, events);
        }
    }

    private void ReturnRx()
    {
        if (_rx is { } rx)
        {
            _rx = null;
            ArrayPool<byte>.Shared.Return(rx);
        }
    }

    private void ReturnOut()
    {
        if (_out is { } buffer)
        {
            _out = null;
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void ReleaseBuffers()
    {
        _rxFilled = 0;
        _outSent = 0;
        _outLength = 0;
        ReturnRx();
        ReturnOut();
    }

    private void SendReplyUInt64(VhostUserRequest request, ulong value)
    {
        Span<byte> payload = stackalloc byte[VhostUserWire.U64Size];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(payload, value);
        SendReply(request, payload);
    }
}
