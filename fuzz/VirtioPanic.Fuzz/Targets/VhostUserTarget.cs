using Microsoft.Extensions.Time.Testing;
using Microsoft.Win32.SafeHandles;
using VirtioPanic.Device;
using VirtioPanic.Fuzz.Native;
using VirtioPanic.VhostUser;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Loop;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Fuzz.Targets;

// A vhost-user front end that sends a whole conversation at once: the messages, with their file
// descriptors (memfds for memory tables, eventfds for kick/call/err), go into one end of a
// socketpair; the other end is served by a real VhostUserSession (the watchdog device behind it)
// on an event loop this thread drives (VhostUserEventLoop.CreateDriven: the same loop code as the
// process-wide one, without its thread) until the session ends at the end of the stream; the
// replies are drained between turns. The session documents that it never throws for front-end
// input; rings it starts are kicked through the eventfds and processed by the device over the
// memfd, whose contents the input also provides. A session still open after MaxTurns turns is a
// hang and fails the run.
//
// Input:
//   u16 image     length of the image copied into the 64 KiB shared memory region (memfd 0)
//   image bytes
//   messages until the end, each:
//     u32 request
//     u8  flags     bit 7 set: sent as is; else version 1 | (bits 2-3: REPLY, NEED_REPLY)
//     u8  fds       bits 0-1: how many (0-3); then 2 bits per descriptor:
//                   0 the 64 KiB memfd, 1 a fresh eventfd, 2 an eventfd already signalled (a
//                   pending kick), 3 a 4 KiB memfd
//     u16 size      the payload size the header announces
//     payload       up to `size` bytes (fewer at the end of the input: a truncated message)
internal sealed class VhostUserTarget : IFuzzTarget
{
    internal const ulong RegionSize = 0x10000;

    private readonly GuestMemoryRegion _region = GuestMemoryRegion.CreateShared(0, RegionSize, "virtiopanic-fuzz");
    private readonly GuestMemoryRegion _small = GuestMemoryRegion.CreateShared(0, 0x1000, "virtiopanic-fuzz-small");
    private readonly GuestMemory _memory;
    private readonly byte[] _message = new byte[VhostUserWire.HeaderSize + ushort.MaxValue];
    private readonly List<int> _eventFds = [];
    private readonly byte[] _drain = new byte[4096];
    private readonly VhostUserEventLoop _loop;

    // Each turn waits at most 1 ms; a conversation ends at its end of stream in a few turns.
    private const int MaxTurns = 20_000;

    internal VhostUserTarget()
    {
        _memory = new GuestMemory([_region], ownsRegions: false);
        _loop = VhostUserEventLoop.CreateDriven();
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        var reader = new FuzzInput(input);
        ReadOnlySpan<byte> image = reader.Bytes(reader.U16());
        _ = _memory.TryGetSlice(0, RegionSize, out GuestMemorySlice all);
        all.Span.Clear();
        image.CopyTo(all.Span);

        (int frontEnd, int backEnd) = LinuxIo.SocketPair();
        var time = new FakeTimeProvider();
        using var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "fuzz", EventCapacity = 16 }, time);
        using var backend = new VhostUserBackend(device, "/nonexistent/virtiopanic-fuzz.sock");
        try
        {
            SendAll(ref reader, frontEnd);
            _ = Libc.Shutdown(frontEnd, Libc.ShutWrite);
            _ = LinuxIo.SetNonBlocking(frontEnd);
            var socket = new SafeFileHandle(backEnd, ownsHandle: true);   // the session owns it
            backEnd = -1;
            var listener = new VhostUserListener(backend, _loop, -1);
            listener.Serve(socket);
            int turns = 0;
            while (listener.Serving)
            {
                if (++turns > MaxTurns)
                {
                    throw new InvalidOperationException($"the session was still open after {MaxTurns} turns of its loop");
                }

                while (LinuxIo.Read(frontEnd, _drain) > 0)
                {
                }

                _loop.RunTurn(1);
            }
        }
        finally
        {
            while (LinuxIo.Read(frontEnd, _drain) > 0)
            {
            }

            _ = LinuxIo.Close(frontEnd);
            if (backEnd >= 0)
            {
                _ = LinuxIo.Close(backEnd);
            }

            foreach (int fd in _eventFds)
            {
                _ = LinuxIo.Close(fd);
            }

            _eventFds.Clear();
            while (device.Events.TryRead(out _))
            {
            }
        }
    }

    private void SendAll(ref FuzzInput reader, int socket)
    {
        Span<int> fds = stackalloc int[3];
        while (!reader.IsEmpty)
        {
            uint request = reader.U32();
            byte flagBits = reader.U8();
            uint flags = (flagBits & 0x80) != 0 ? flagBits : VhostUserWire.Version | (uint)(flagBits & 0x0C);
            byte fdBits = reader.U8();
            ushort size = reader.U16();
            ReadOnlySpan<byte> payload = reader.Bytes(size);
            int count = fdBits & 3;
            for (int i = 0; i < count; i++)
            {
                fds[i] = Descriptor((fdBits >> (2 + (2 * i))) & 3);
            }

            Span<byte> message = _message.AsSpan(0, VhostUserWire.HeaderSize + payload.Length);
            VhostUserWire.WriteHeader(message, request, flags, size);
            payload.CopyTo(message[VhostUserWire.HeaderSize..]);
            // Non-blocking: the session has not started reading; a full socket ends the conversation.
            if (LinuxIo.SendWithFds(socket, message, fds[..count], dontWait: true) != message.Length)
            {
                return;
            }
        }
    }

    private int Descriptor(int kind)
    {
        switch (kind)
        {
            case 0:
                return (int)_region.SharedFileHandle!.DangerousGetHandle();
            case 3:
                return (int)_small.SharedFileHandle!.DangerousGetHandle();
            default:
                int fd = LinuxIo.EventFd(0, LinuxIo.EfdCloexec | LinuxIo.EfdNonblock);
                if (fd < 0)
                {
                    throw new InvalidOperationException("eventfd failed (the fuzz harness, not the code under test)");
                }

                _eventFds.Add(fd);
                if (kind == 2)
                {
                    _ = LinuxIo.Write(fd, [1, 0, 0, 0, 0, 0, 0, 0]);
                }

                return fd;
        }
    }
}
