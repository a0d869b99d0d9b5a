using Microsoft.Win32.SafeHandles;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Protocol;

namespace VirtioPanic.VhostUser;

// Framing: reading one message (header, descriptors, payload) and writing replies. The socket is
// used non-blocking; a peer that stops mid-message or stops reading our replies is given
// IoTimeoutMilliseconds and then dropped, so one stuck front end cannot wedge the back end.
internal sealed partial class VhostUserSession
{
    private bool _replyFailed;
    private bool _truncatedFds;

    private ReadResult ReadMessage(out VhostUserRequest request, out uint flags, out int size, out string? error)
    {
        request = VhostUserRequest.None;
        flags = 0;
        size = 0;
        error = null;

        // Descriptors ride on the first byte of the message, so they arrive with the header.
        int received = LinuxIo.ReceiveWithFds(_socketFd, _header, _receivedFds, out int fdCount, out bool truncated, dontWait: true);
        AdoptFiles(fdCount);
        if (received == -LinuxIo.Eagain || received == -LinuxIo.Eintr)
        {
            return ReadResult.NoMessage;
        }

        if (received == 0)
        {
            return ReadResult.EndOfStream;
        }

        if (received < 0)
        {
            error = $"recvmsg failed (errno {-received})";
            return ReadResult.Fatal;
        }

        if (received < _header.Length && !ReadExact(_header.AsSpan(received), out error))
        {
            return ReadResult.Fatal;
        }

        uint code = VhostUserWire.ReadUInt32(_header, 0);
        flags = VhostUserWire.ReadUInt32(_header, 4);
        uint announced = VhostUserWire.ReadUInt32(_header, 8);
        request = (VhostUserRequest)code;

        if ((flags & VhostUserWire.VersionMask) != VhostUserWire.Version)
        {
            error = $"message {code} has protocol version {flags & VhostUserWire.VersionMask}, expected {VhostUserWire.Version}";
            return ReadResult.Fatal;
        }

        if (announced > VhostUserWire.MaxPayloadSize)
        {
            // Not read: skipping an arbitrary amount would let a peer keep us busy; the stream
            // cannot be re-synchronised either, so the connection ends.
            error = $"message {code} announces a {announced}-byte payload (limit {VhostUserWire.MaxPayloadSize})";
            return ReadResult.Fatal;
        }

        size = (int)announced;
        if (size > 0 && !ReadExact(_payload.AsSpan(0, size), out error))
        {
            return ReadResult.Fatal;
        }

        if (truncated)
        {
            // More descriptors than any message carries: the extras were closed on receipt; the
            // message itself is refused by the handler's descriptor-count check.
            _fileCount = Math.Min(_fileCount, LinuxIo.MaxFdsPerMessage);
            _truncatedFds = true;
        }
        else
        {
            _truncatedFds = false;
        }

        return ReadResult.Message;
    }

    private void AdoptFiles(int count)
    {
        // Wrap every received descriptor at once, so each is closed exactly once whatever happens next.
        for (int i = 0; i < count; i++)
        {
            if (_fileCount < _files.Length)
            {
                _files[_fileCount++] = new SafeFileHandle(_receivedFds[i], ownsHandle: true);
            }
            else
            {
                _ = LinuxIo.Close(_receivedFds[i]);
            }
        }
    }

    private bool ReadExact(Span<byte> destination, out string? error)
    {
        error = null;
        while (!destination.IsEmpty)
        {
            int received = LinuxIo.ReceiveWithFds(_socketFd, destination, _receivedFds, out int fdCount, out _, dontWait: true);
            AdoptFiles(fdCount);
            if (received > 0)
            {
                destination = destination[received..];
                continue;
            }

            if (received == 0)
            {
                error = "front end closed the connection in the middle of a message";
                return false;
            }

            if (received == -LinuxIo.Eintr)
            {
                continue;
            }

            if (received != -LinuxIo.Eagain)
            {
                error = $"recv failed (errno {-received})";
                return false;
            }

            if (!WaitSocket(LinuxIo.PollIn))
            {
                error = $"front end sent an incomplete message and nothing more for {IoTimeoutMilliseconds} ms";
                return false;
            }
        }

        return true;
    }

    private bool WaitSocket(short events)
    {
        Span<LinuxIo.PollFd> fds = [new LinuxIo.PollFd { Fd = _socketFd, Events = events }];
        while (true)
        {
            int ready = LinuxIo.Poll(fds, IoTimeoutMilliseconds);
            if (ready == -LinuxIo.Eintr)
            {
                continue;
            }

            return ready > 0 && (fds[0].Revents & (events | LinuxIo.PollHup | LinuxIo.PollErr)) != 0;
        }
    }

    private void SendReply(VhostUserRequest request, ReadOnlySpan<byte> payload)
    {
        Span<byte> message = _reply.AsSpan(0, VhostUserWire.HeaderSize + payload.Length);
        VhostUserWire.WriteHeader(message, (uint)request, VhostUserWire.Version | VhostUserWire.ReplyFlag, payload.Length);
        payload.CopyTo(message[VhostUserWire.HeaderSize..]);
        ReadOnlySpan<byte> remaining = message;
        while (!remaining.IsEmpty)
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

            if (sent != -LinuxIo.Eagain || !WaitSocket(LinuxIo.PollOut))
            {
                _replyFailed = true;
                return;
            }
        }
    }

    private void SendReplyUInt64(VhostUserRequest request, ulong value)
    {
        Span<byte> payload = stackalloc byte[VhostUserWire.U64Size];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(payload, value);
        SendReply(request, payload);
    }
}
