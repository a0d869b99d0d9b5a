using System.Buffers.Binary;
using System.Net.Sockets;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.VhostUser.Tests.Protocol;

/// <summary>
/// An in-process vhost-user front end for protocol tests: it connects to the back end's socket,
/// sends messages (with file descriptors) exactly as the wire format says, reads replies with a
/// timeout, and owns a guest: memfd-backed RAM shared with the back end, split rings built by the
/// GuestDriver harness, kick/call/err eventfds.
/// </summary>
/// <remarks>
/// Guest RAM is <see cref="RamSize"/> bytes at guest-physical 0, described to the back end the
/// way QEMU 7.2 does for a pc machine: two regions from one memfd with a hole at 0xa0000-0xc0000,
/// and front-end virtual addresses (<see cref="UserBase"/> + offset) that differ from the
/// guest-physical ones, so ring addresses must be translated.
/// </remarks>
internal sealed class FakeFrontEnd : IDisposable
{
    internal const ulong RamSize = 4 * 1024 * 1024;
    internal const ulong UserBase = 0x7f12_3400_0000;
    internal const ulong HoleStart = 0xa0000;
    internal const ulong HoleEnd = 0xc0000;
    private const int TimeoutMilliseconds = 5000;

    private readonly Socket _socket;
    private readonly List<int> _eventFds = [];

    internal FakeFrontEnd(string socketPath)
    {
        _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        Memory = new GuestMemory(GuestMemoryRegion.CreateShared(0, RamSize, "vp-fake-guest"));
        Allocator = new GuestAllocator(Memory, 0x100000, RamSize - 0x100000);
    }

    internal GuestMemory Memory { get; }

    internal GuestAllocator Allocator { get; }

    internal int SocketFd => (int)_socket.Handle;


    internal static ulong UserAddress(ulong guestAddress) => UserBase + guestAddress;

    // --- raw messages ---

    internal void Send(VhostUserRequest request, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default, bool needReply = false, uint? flagsOverride = null, uint? sizeOverride = null)
    {
        byte[] message = new byte[VhostUserWire.HeaderSize + payload.Length];
        uint flags = flagsOverride ?? (VhostUserWire.Version | (needReply ? VhostUserWire.NeedReplyFlag : 0));
        VhostUserWire.WriteHeader(message, (uint)request, flags, (int)(sizeOverride ?? (uint)payload.Length));
        payload.CopyTo(message.AsSpan(VhostUserWire.HeaderSize));
        int sent = LinuxIo.SendWithFds(SocketFd, message, fds, dontWait: false);
        if (sent != message.Length)
        {
            throw new IOException($"send returned {sent}");
        }
    }

    internal void SendRaw(ReadOnlySpan<byte> bytes)
    {
        int sent = LinuxIo.SendWithFds(SocketFd, bytes, [], dontWait: false);
        if (sent != bytes.Length)
        {
            throw new IOException($"send returned {sent}");
        }
    }

    /// <summary>Reads one reply; throws on timeout or end of stream.</summary>
    internal (VhostUserRequest Request, uint Flags, byte[] Payload) ReadReply()
    {
        byte[] header = ReadExact(VhostUserWire.HeaderSize) ?? throw new IOException("back end closed the connection");
        uint size = VhostUserWire.ReadUInt32(header, 8);
        byte[] payload = size == 0 ? [] : ReadExact((int)size) ?? throw new IOException("back end closed mid-reply");
        return ((VhostUserRequest)VhostUserWire.ReadUInt32(header, 0), VhostUserWire.ReadUInt32(header, 4), payload);
    }

    /// <summary>True when the back end closed the connection (end of stream) within the timeout.</summary>
    internal bool WaitForClose()
    {
        byte[] buffer = new byte[64];
        while (true)
        {
            if (!Wait(SocketFd, TimeoutMilliseconds))
            {
                return false;
            }

            int n = LinuxIo.Read(SocketFd, buffer);
            if (n <= 0)
            {
                return true;
            }
        }
    }

    /// <summary>True when nothing arrives within <paramref name="milliseconds"/>.</summary>
    internal bool NothingPending(int milliseconds = 200) => !Wait(SocketFd, milliseconds);

    internal ulong ReadU64Reply(VhostUserRequest expected)
    {
        (VhostUserRequest request, uint flags, byte[] payload) = ReadReply();
        if (request != expected || (flags & VhostUserWire.ReplyFlag) == 0 || payload.Length != 8)
        {
            throw new IOException($"unexpected reply {request} flags 0x{flags:x} size {payload.Length} to {expected}");
        }

        return BinaryPrimitives.ReadUInt64LittleEndian(payload);
    }

    // --- typed messages ---

    internal ulong GetFeatures()
    {
        Send(VhostUserRequest.GetFeatures, []);
        return ReadU64Reply(VhostUserRequest.GetFeatures);
    }

    internal ulong GetProtocolFeatures()
    {
        Send(VhostUserRequest.GetProtocolFeatures, []);
        return ReadU64Reply(VhostUserRequest.GetProtocolFeatures);
    }

    internal void SendU64(VhostUserRequest request, ulong value, bool needReply = false, ReadOnlySpan<int> fds = default)
    {
        Span<byte> payload = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, value);
        Send(request, payload, fds, needReply);
    }

    internal void SendState(VhostUserRequest request, uint index, uint num, bool needReply = false)
    {
        Span<byte> payload = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, index);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[4..], num);
        Send(request, payload, default, needReply);
    }

    internal uint GetVringBase(uint index)
    {
        SendState(VhostUserRequest.GetVringBase, index, 0);
        (VhostUserRequest request, _, byte[] payload) = ReadReply();
        if (request != VhostUserRequest.GetVringBase || payload.Length != 8 || BinaryPrimitives.ReadUInt32LittleEndian(payload) != index)
        {
            throw new IOException($"unexpected GET_VRING_BASE reply {request} size {payload.Length}");
        }

        return BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(4));
    }

    internal void SendVringAddr(uint index, ulong descriptorsUser, ulong usedUser, ulong availUser, bool needReply = false)
    {
        Span<byte> payload = stackalloc byte[40];
        payload.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(payload, index);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[8..], descriptorsUser);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[16..], usedUser);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[24..], availUser);
        Send(VhostUserRequest.SetVringAddr, payload, default, needReply);
    }

    /// <summary>SET_MEM_TABLE as QEMU 7.2 sends it for a pc machine: low RAM below the VGA hole, the rest above it, one memfd.</summary>
    internal void SendQemuStyleMemTable(bool needReply = false)
    {
        (ulong Gpa, ulong Size, ulong Offset)[] regions =
        [
            (0, HoleStart, 0),
            (HoleEnd, RamSize - HoleEnd, HoleEnd),
        ];
        SendMemTable(regions, [MemFdNumber, MemFdNumber], needReply);
    }

    /// <summary>
    /// Sends SET_MEM_TABLE. <paramref name="slots"/> pads the payload to that many 32-byte region
    /// slots (User-Mode Linux sends two slots whatever its count); unused slots are filled with 0xee.
    /// </summary>
    internal void SendMemTable(ReadOnlySpan<(ulong Gpa, ulong Size, ulong Offset)> regions, ReadOnlySpan<int> fds, bool needReply = false, int? countOverride = null, int? slots = null)
    {
        byte[] payload = new byte[8 + (32 * Math.Max(regions.Length, slots ?? 0))];
        payload.AsSpan(8 + (32 * regions.Length)).Fill(0xee);
        BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)(countOverride ?? regions.Length));
        for (int i = 0; i < regions.Length; i++)
        {
            Span<byte> r = payload.AsSpan(8 + (32 * i));
            BinaryPrimitives.WriteUInt64LittleEndian(r, regions[i].Gpa);
            BinaryPrimitives.WriteUInt64LittleEndian(r[8..], regions[i].Size);
            BinaryPrimitives.WriteUInt64LittleEndian(r[16..], UserAddress(regions[i].Gpa));
            BinaryPrimitives.WriteUInt64LittleEndian(r[24..], regions[i].Offset);
        }

        Send(VhostUserRequest.SetMemTable, payload, fds, needReply);
    }

    internal int MemFdNumber => (int)Memory.Regions[0].SharedFileHandle!.DangerousGetHandle();

    /// <summary>A new non-blocking eventfd owned by this front end.</summary>
    internal int NewEventFd()
    {
        int fd = LinuxIo.EventFd(0, LinuxIo.EfdCloexec | LinuxIo.EfdNonblock);
        _eventFds.Add(fd);
        return fd;
    }

    internal void CloseEventFd(int fd)
    {
        if (_eventFds.Remove(fd))
        {
            _ = LinuxIo.Close(fd);
        }
    }

    internal static void Signal(int eventFd)
    {
        Span<byte> one = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(one, 1);
        _ = LinuxIo.Write(eventFd, one);
    }

    /// <summary>Waits until the eventfd is signalled, then consumes its counter.</summary>
    internal static bool WaitSignalled(int eventFd, int milliseconds = TimeoutMilliseconds)
    {
        if (!Wait(eventFd, milliseconds))
        {
            return false;
        }

        Span<byte> counter = stackalloc byte[8];
        return LinuxIo.Read(eventFd, counter) == 8;
    }

    /// <summary>A split ring of <paramref name="size"/> entries (with an indirect pool) allocated above the VGA hole.</summary>
    internal SplitRingDriver NewRing(ushort size, bool eventIndex) => SplitRingDriver.Allocate(Allocator, size, eventIndex, maxIndirect: 4);

    /// <summary>Sends NUM, BASE, ADDR (front-end virtual addresses) for a ring.</summary>
    internal void ConfigureRing(uint index, SplitRingDriver ring, ushort baseIndex = 0)
    {
        SendState(VhostUserRequest.SetVringNum, index, ring.Size);
        SendState(VhostUserRequest.SetVringBase, index, baseIndex);
        SendVringAddr(index, UserAddress(ring.Config.DescriptorArea), UserAddress(ring.Config.DeviceArea), UserAddress(ring.Config.DriverArea));
    }

    /// <summary>Negotiates like QEMU, starts ring 0 of size 8 with EVENT_IDX, returns the driver ring.</summary>
    internal SplitRingDriver StartRing0(out int kick, out int call)
    {
        SendU64(VhostUserRequest.SetFeatures, Virtio.Device.VirtioFeatures.Version1 | VhostUserBackend.ProtocolFeaturesBit | Virtio.Device.VirtioFeatures.EventIndex);
        SendQemuStyleMemTable();
        SplitRingDriver ring = AttachRing(0, 8, eventIndex: true, out kick, out call);
        SendState(VhostUserRequest.SetVringEnable, 0, 1);
        // A synchronous round trip: everything above has been handled when the reply comes.
        _ = GetFeatures();
        return ring;
    }

    /// <summary>A new ring sent as NUM, BASE, ADDR, then new call and kick eventfds (no SET_VRING_ENABLE).</summary>
    internal SplitRingDriver AttachRing(uint index, ushort size, bool eventIndex, out int kick, out int call)
    {
        SplitRingDriver ring = NewRing(size, eventIndex);
        ConfigureRing(index, ring);
        kick = NewEventFd();
        call = NewEventFd();
        SendU64(VhostUserRequest.SetVringCall, index, fds: [call]);
        SendU64(VhostUserRequest.SetVringKick, index, fds: [kick]);
        return ring;
    }

    /// <summary>Posts one device-writable buffer of <paramref name="length"/> bytes and kicks.</summary>
    internal void PostAndKick(SplitRingDriver ring, int kick, uint length)
    {
        ulong buffer = Allocator.Allocate(length);
        if (!ring.TryAdd([new DriverBuffer(buffer, length, DeviceWritable: true)], out _))
        {
            throw new InvalidOperationException("the ring is full");
        }

        ring.Publish();
        Signal(kick);
    }

    public void Dispose()
    {
        _socket.Dispose();
        foreach (int fd in _eventFds)
        {
            _ = LinuxIo.Close(fd);
        }

        _eventFds.Clear();
        Memory.Dispose();
    }

    internal void CloseSocket() => _socket.Dispose();

    private static bool Wait(int fd, int milliseconds)
    {
        Span<LinuxIo.PollFd> fds = [new LinuxIo.PollFd { Fd = fd, Events = LinuxIo.PollIn }];
        return LinuxIo.Poll(fds, milliseconds) > 0;
    }

    private byte[]? ReadExact(int length)
    {
        byte[] buffer = new byte[length];
        int filled = 0;
        while (filled < length)
        {
            if (!Wait(SocketFd, TimeoutMilliseconds))
            {
                throw new TimeoutException("no reply from the back end");
            }

            int n = LinuxIo.Read(SocketFd, buffer.AsSpan(filled));
            if (n <= 0)
            {
                return null;
            }

            filled += n;
        }

        return buffer;
    }
}
