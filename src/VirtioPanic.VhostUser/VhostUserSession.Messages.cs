using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser;

// Message handlers (vhost-user.rst, "Front-end message types"). Each handler validates its
// payload size, its descriptor count and every field, and returns null on success or the reason
// for refusing.
//
// The reply rule: the front end must never wait for a reply that does not come.
// - A request with a reply of its own (RequestHasReply: GET_FEATURES, GET_PROTOCOL_FEATURES,
//   GET_VRING_BASE, GET_QUEUE_NUM, GET_CONFIG, GET_MAX_MEM_SLOTS, and those of protocol features
//   this back end never offers: CREATE_CRYPTO_SESSION, POSTCOPY_ADVISE, GET_INFLIGHT_FD,
//   GET_STATUS, GET_SHARED_OBJECT, SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE; SET_LOG_BASE has a
//   reply only with LOG_SHMFD, which is never offered, so it follows the REPLY_ACK rule below)
//   sends that reply itself on success. Refused, it gets the protocol's failure form where one
//   exists (GET_CONFIG: a reply with an empty payload, which QEMU's vhost_user_get_config treats
//   as a failure) and otherwise the connection is closed with a logged reason: those replies
//   have no failure form, and a made-up value (a feature word, a ring base) would be believed.
//   The same holds for such a request that came with too many descriptors.
// - Any other request is answered with the REPLY_ACK status (u64 0 = success, 1 = failure) when
//   the front end negotiated REPLY_ACK and set NEED_REPLY; without that it expects no reply.
internal sealed partial class VhostUserSession
{
    private bool _replied;   // the handler sent the request's own reply; no REPLY_ACK then

    // Requests whose reply the front end waits for whatever REPLY_ACK says (vhost-user.rst).
    internal static bool RequestHasReply(VhostUserRequest request) => request is
        VhostUserRequest.GetFeatures or VhostUserRequest.GetProtocolFeatures or VhostUserRequest.GetVringBase
        or VhostUserRequest.GetQueueNum or VhostUserRequest.GetConfig or VhostUserRequest.GetMaxMemSlots
        or VhostUserRequest.CreateCryptoSession or VhostUserRequest.PostcopyAdvise
        or VhostUserRequest.GetInflightFd or VhostUserRequest.GetStatus
        or VhostUserRequest.GetSharedObject or VhostUserRequest.SetDeviceStateFd or VhostUserRequest.CheckDeviceState;

    private void Dispatch(VhostUserRequest request, uint flags, ReadOnlySpan<byte> payload)
    {
        _replied = false;
        string? failure = _truncatedFds
            ? "more file descriptors than any message carries"
            : request switch
            {
                VhostUserRequest.GetFeatures => GetFeatures(payload),
                VhostUserRequest.SetFeatures => SetFeatures(payload),
                VhostUserRequest.GetProtocolFeatures => GetProtocolFeatures(payload),
                VhostUserRequest.SetProtocolFeatures => SetProtocolFeatures(payload),
                VhostUserRequest.SetOwner => ExpectEmpty(payload, 0) ?? SetOwner(),
                VhostUserRequest.ResetOwner => ExpectEmpty(payload, 0) ?? ResetOwner(),
                VhostUserRequest.SetMemTable => SetMemTable(payload),
                VhostUserRequest.SetVringNum => SetVringNum(payload),
                VhostUserRequest.SetVringAddr => SetVringAddr(payload),
                VhostUserRequest.SetVringBase => SetVringBase(payload),
                VhostUserRequest.GetVringBase => GetVringBase(payload),
                VhostUserRequest.SetVringKick => SetVringFd(request, payload),
                VhostUserRequest.SetVringCall => SetVringFd(request, payload),
                VhostUserRequest.SetVringErr => SetVringFd(request, payload),
                VhostUserRequest.SetVringEnable => SetVringEnable(payload),
                VhostUserRequest.GetQueueNum => GetQueueNum(payload),
                VhostUserRequest.GetMaxMemSlots => GetMaxMemSlots(payload),
                VhostUserRequest.GetConfig => GetConfig(payload),
                VhostUserRequest.SetConfig => SetConfig(payload),
                VhostUserRequest.SetBackendReqFd => SetBackendReqFd(payload),
                _ => "unsupported request",
            };

        if (failure is null)
        {
            _statistics.OnMessageHandled();
        }
        else
        {
            Reject(request, failure);
            if (!_replied && RequestHasReply(request))
            {
                _closeReason = $"refused {request} ({(uint)request}), which the front end waits for a reply to: {failure}";
                return;
            }
        }

        bool needReply = (flags & VhostUserWire.NeedReplyFlag) != 0 && (_protocolFeatures & VhostUserProtocolFeatures.ReplyAck) != 0;
        if (!_replied && needReply)
        {
            // REPLY_ACK: u64 zero for success, non-zero for failure.
            SendReplyUInt64(request, failure is null ? 0UL : 1UL);
        }
    }

    private void Reject(VhostUserRequest request, string reason)
    {
        _statistics.OnMessageRejected();
        VhostUserMetrics.MessagesRefused.Add(1, VhostUserMetrics.RequestTag(request));
        VhostUserLog.MessageRejected(_logger, request, (uint)request, reason);
    }

    private void Reply(VhostUserRequest request, ReadOnlySpan<byte> payload)
    {
        SendReply(request, payload);
        _replied = true;
    }

    private void ReplyUInt64(VhostUserRequest request, ulong value)
    {
        SendReplyUInt64(request, value);
        _replied = true;
    }

    private string? ExpectEmpty(ReadOnlySpan<byte> payload, int fds) => Expect(payload, 0, fds);

    private string? Expect(ReadOnlySpan<byte> payload, int size, int fds)
    {
        if (payload.Length != size)
        {
            return $"payload is {payload.Length} bytes, expected {size}";
        }

        return _fileCount != fds ? $"came with {_fileCount} file descriptors, expected {fds}" : null;
    }

    private string? GetFeatures(ReadOnlySpan<byte> payload)
    {
        if (ExpectEmpty(payload, 0) is { } error)
        {
            return error;
        }

        ReplyUInt64(VhostUserRequest.GetFeatures, _backend.OfferedFeatures);
        return null;
    }

    private string? SetFeatures(ReadOnlySpan<byte> payload)
    {
        if (Expect(payload, VhostUserWire.U64Size, 0) is { } error)
        {
            return error;
        }

        ulong acked = VhostUserWire.ReadUInt64(payload, 0);

        // QEMU 7.2's stubs forward what the guest accepted from QEMU's own offer, so ring features
        // arrive although this back end may not have offered them (feasibility pitfall 2). Those
        // two the queue engine implements, so they are honoured. Bits that change the ring layout
        // or addressing cannot be ignored safely; anything else unoffered is ignored.
        ulong offered = _backend.OfferedFeatures;
        ulong unoffered = acked & ~offered;
        const ulong Honoured = Virtio.Device.VirtioFeatures.EventIndex | Virtio.Device.VirtioFeatures.IndirectDescriptors;
        const ulong Unsafe = Virtio.Device.VirtioFeatures.RingPacked | Virtio.Device.VirtioFeatures.InOrder
            | Virtio.Device.VirtioFeatures.AccessPlatform | Virtio.Device.VirtioFeatures.NotificationData;
        if ((unoffered & Unsafe) != 0)
        {
            return $"acked features 0x{unoffered & Unsafe:x} that change the ring format were not offered";
        }

        ulong ignored = unoffered & ~Honoured;

        ulong negotiated = acked & ~ignored;
        if (_context is not null && negotiated != _features)
        {
            return "features cannot change while rings are running";
        }

        if (unoffered != 0)
        {
            VhostUserLog.UnofferedFeatures(_logger, unoffered & Honoured, ignored);
        }

        ulong virtioBits = negotiated & ~VhostUserBackend.ProtocolFeaturesBit;
        bool accepted;
        try
        {
            accepted = _device.AcceptFeatures(virtioBits);
        }
        catch (Exception e)
        {
            VhostUserMetrics.DeviceFault(nameof(IVirtioDevice.AcceptFeatures));
            VhostUserLog.DeviceFault(_logger, e, _device.DeviceId, nameof(IVirtioDevice.AcceptFeatures));
            accepted = false;
        }

        if (!accepted)
        {
            return $"the device refused features 0x{virtioBits:x}";
        }

        _features = negotiated;
        _featuresAcked = true;
        _statistics.SetNegotiatedFeatures(virtioBits);
        VhostUserLog.FeaturesNegotiated(_logger, negotiated, offered);
        UpdateRings();
        return null;
    }

    private string? GetProtocolFeatures(ReadOnlySpan<byte> payload)
    {
        if (ExpectEmpty(payload, 0) is { } error)
        {
            return error;
        }

        ReplyUInt64(VhostUserRequest.GetProtocolFeatures, (ulong)_backend.OfferedProtocolFeatures);
        return null;
    }

    private string? SetProtocolFeatures(ReadOnlySpan<byte> payload)
    {
        if (Expect(payload, VhostUserWire.U64Size, 0) is { } error)
        {
            return error;
        }

        var requested = (VhostUserProtocolFeatures)VhostUserWire.ReadUInt64(payload, 0);
        VhostUserProtocolFeatures unknown = requested & ~_backend.OfferedProtocolFeatures;
        if (unknown != 0)
        {
            return $"protocol features 0x{(ulong)unknown:x} were not offered";
        }

        _protocolFeatures = requested;
        _statistics.SetNegotiatedProtocolFeatures((ulong)requested);
        return null;
    }

    private string? SetOwner()
    {
        // Set-up is complete: from now on the connection may stay idle (see SetupTimeout).
        _owned = true;
        return null;
    }

    private string? ResetOwner()
    {
        // Deprecated, but still defined: forget the session's state, keep the connection.
        StopDevice("RESET_OWNER");
        foreach (VhostUserRing ring in _rings)
        {
            DetachKick(ring);
            ring.Clear();
        }

        _memory?.Dispose();
        _memory = null;
        _features = 0;
        _featuresAcked = false;
        return null;
    }

    private string? SetMemTable(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < VhostUserWire.MemoryTableHeaderSize)
        {
            return $"payload is {payload.Length} bytes, shorter than the table header";
        }

        uint count = VhostUserWire.ReadUInt32(payload, 0);
        if (count == 0 || count > VhostUserWire.MaxMemoryRegions)
        {
            return $"region count {count} is not between 1 and {VhostUserWire.MaxMemoryRegions}";
        }

        // The table is read by its count: at least that many regions, and no more bytes than the
        // protocol's largest table. User-Mode Linux sends a fixed two-slot table (72 bytes) with a
        // count of 1; the unused slot is ignored. One file descriptor per counted region.
        int needed = VhostUserWire.MemoryTableHeaderSize + ((int)count * VhostUserWire.MemoryRegionSize);
        int largest = VhostUserWire.MemoryTableHeaderSize + (VhostUserWire.MaxMemoryRegions * VhostUserWire.MemoryRegionSize);
        if (payload.Length < needed || payload.Length > largest)
        {
            return $"payload is {payload.Length} bytes, expected {needed} to {largest} for {count} regions";
        }

        if (_fileCount != (int)count)
        {
            return $"came with {_fileCount} file descriptors, expected {count}";
        }

        Span<VhostUserMemoryTable.RegionDescription> regions = stackalloc VhostUserMemoryTable.RegionDescription[(int)count];
        for (int i = 0; i < regions.Length; i++)
        {
            int offset = VhostUserWire.MemoryTableHeaderSize + (i * VhostUserWire.MemoryRegionSize);
            regions[i] = new VhostUserMemoryTable.RegionDescription(
                GuestAddress: VhostUserWire.ReadUInt64(payload, offset),
                Size: VhostUserWire.ReadUInt64(payload, offset + 8),
                UserAddress: VhostUserWire.ReadUInt64(payload, offset + 16),
                MmapOffset: VhostUserWire.ReadUInt64(payload, offset + 24));
        }

        VhostUserMemoryTable? table = VhostUserMemoryTable.TryCreate(regions, _files.AsSpan(0, (int)count)!, _backend.RequireSealedMemory, out bool unsealed, out string? mapError);
        if (table is null)
        {
            return mapError;
        }

        if (unsealed && !_unsealedLogged)
        {
            _unsealedLogged = true;
            VhostUserLog.UnsealedMemory(_logger, _connection);
        }

        // A new table while the device runs (QEMU re-sends it when guest memory changes): stop
        // the device and its rings, keeping each ring's position, swap the memory, restart.
        bool wasActive = _context is not null;
        if (wasActive)
        {
            StopDevice("memory table replaced");
        }

        _memory?.Dispose();
        _memory = table;
        VhostUserLog.MemoryTableMapped(_logger, table.RegionCount);
        UpdateRings();
        return null;
    }

    private string? SetVringNum(ReadOnlySpan<byte> payload)
    {
        if (ParseVringState(payload, out VhostUserRing? ring, out uint num) is { } error)
        {
            return error;
        }

        ushort max = ring.Queue.MaxSize;
        if (num == 0 || num > max || (num & (num - 1)) != 0)
        {
            return $"ring {ring.Index} size {num} is not a power of two between 1 and {max}";
        }

        if (ring.Live)
        {
            return $"ring {ring.Index} is running";
        }

        ring.Num = (ushort)num;
        ring.Failed = false;
        return null;
    }

    private string? SetVringAddr(ReadOnlySpan<byte> payload)
    {
        if (Expect(payload, VhostUserWire.VringAddressSize, 0) is { } error)
        {
            return error;
        }

        uint index = VhostUserWire.ReadUInt32(payload, 0);
        if (index >= (uint)_rings.Length)
        {
            return $"ring index {index} is not below the queue count {_rings.Length}";
        }

        VhostUserRing ring = _rings[index];
        if (ring.Live)
        {
            return $"ring {index} is running";
        }

        // Flag bit 0 (VHOST_VRING_F_LOG) asks for dirty logging, which is only for live
        // migration; this back end offers no LOG_SHMFD, so the log address is simply not used.
        ring.DescriptorUserAddress = VhostUserWire.ReadUInt64(payload, 8);
        ring.UsedUserAddress = VhostUserWire.ReadUInt64(payload, 16);
        ring.AvailUserAddress = VhostUserWire.ReadUInt64(payload, 24);
        ring.HasAddresses = true;
        ring.Failed = false;

        if (_memory is not null && ring.Num != 0 && TranslateRing(ring, out _, out _, out _) is { } translation)
        {
            ring.HasAddresses = false;
            return translation;
        }

        return null;
    }

    private string? SetVringBase(ReadOnlySpan<byte> payload)
    {
        if (ParseVringState(payload, out VhostUserRing? ring, out uint num) is { } error)
        {
            return error;
        }

        if (num > ushort.MaxValue && !PackedRings)
        {
            return $"ring {ring.Index} base {num} does not fit a split ring index";
        }

        if (ring.Live)
        {
            return $"ring {ring.Index} is running";
        }

        ring.Base = num;
        ring.Failed = false;
        return null;
    }

    private string? GetVringBase(ReadOnlySpan<byte> payload)
    {
        if (ParseVringState(payload, out VhostUserRing? ring, out _) is { } error)
        {
            return error;
        }

        StopRing(ring);
        Span<byte> reply = stackalloc byte[VhostUserWire.VringStateSize];
        BinaryPrimitives.WriteUInt32LittleEndian(reply, (uint)ring.Index);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[4..], ring.Base);
        Reply(VhostUserRequest.GetVringBase, reply);
        return null;
    }

    private string? SetVringFd(VhostUserRequest request, ReadOnlySpan<byte> payload)
    {
        if (payload.Length != VhostUserWire.U64Size)
        {
            return $"payload is {payload.Length} bytes, expected {VhostUserWire.U64Size}";
        }

        ulong value = VhostUserWire.ReadUInt64(payload, 0);
        ulong index = value & VhostUserWire.VringFdIndexMask;
        bool noFd = (value & VhostUserWire.VringFdNoFdFlag) != 0;
        if ((value & ~(VhostUserWire.VringFdIndexMask | VhostUserWire.VringFdNoFdFlag)) != 0)
        {
            return $"reserved bits set in 0x{value:x}";
        }

        if (index >= (ulong)_rings.Length)
        {
            return $"ring index {index} is not below the queue count {_rings.Length}";
        }

        if (_fileCount != (noFd ? 0 : 1))
        {
            return $"came with {_fileCount} file descriptors, expected {(noFd ? 0 : 1)}";
        }

        VhostUserRing ring = _rings[index];
        SafeFileHandle? file = noFd ? null : TakeFile(0);
        switch (request)
        {
            case VhostUserRequest.SetVringKick:
                if (file is null)
                {
                    // Polling mode (no kick descriptor) is not offered: a ring must be kicked.
                    return $"ring {index}: polling without a kick eventfd is not supported";
                }

                // QEMU passes non-blocking eventfds; make sure of it, a blocking read would stall the session.
                _ = LinuxIo.SetNonBlocking((int)file.DangerousGetHandle());
                DetachKick(ring);   // out of epoll before the old descriptor is closed
                ring.SetKick(file);
                ring.KickUnwatchable = false;
                ring.Failed = false;
                if (ring.Live)
                {
                    // A new kick descriptor for a running ring: buffers may have been published
                    // while we listened to the old one.
                    NotifyDevice(ring);
                }
                else
                {
                    UpdateRings();
                }

                return null;
            case VhostUserRequest.SetVringCall:
                // Always the latest: QEMU sends a new call descriptor several times per start.
                ring.SetCall(file);
                return null;
            default:
                ring.SetErr(file);
                return null;
        }
    }

    private string? SetVringEnable(ReadOnlySpan<byte> payload)
    {
        if (ParseVringState(payload, out VhostUserRing? ring, out uint num) is { } error)
        {
            return error;
        }

        if (num > 1)
        {
            return $"ring {ring.Index} enable value {num} is neither 0 nor 1";
        }

        if (!ProtocolFeaturesAcked)
        {
            return "SET_VRING_ENABLE needs VHOST_USER_F_PROTOCOL_FEATURES";
        }

        ring.Enabled = num == 1;
        if (ring.Enabled)
        {
            if (ring.Live)
            {
                NotifyDevice(ring);
            }
            else
            {
                UpdateRings();
            }
        }

        return null;
    }

    private string? GetQueueNum(ReadOnlySpan<byte> payload)
    {
        if (ExpectEmpty(payload, 0) is { } error)
        {
            return error;
        }

        ReplyUInt64(VhostUserRequest.GetQueueNum, (ulong)_rings.Length);
        return null;
    }

    private string? GetMaxMemSlots(ReadOnlySpan<byte> payload)
    {
        if (ExpectEmpty(payload, 0) is { } error)
        {
            return error;
        }

        ReplyUInt64(VhostUserRequest.GetMaxMemSlots, VhostUserWire.MaxMemoryRegions);
        return null;
    }

    private string? GetConfig(ReadOnlySpan<byte> payload)
    {
        string? error = ParseConfig(payload, out uint offset, out uint size, out _);
        if (error is not null)
        {
            // The front end waits for a reply: a header with an empty payload says "failed".
            Reply(VhostUserRequest.GetConfig, []);
            return error;
        }

        Span<byte> reply = stackalloc byte[VhostUserWire.ConfigHeaderSize + (int)size];
        payload[..VhostUserWire.ConfigHeaderSize].CopyTo(reply);
        try
        {
            _device.ReadConfig(offset, reply[VhostUserWire.ConfigHeaderSize..]);
        }
        catch (Exception e)
        {
            VhostUserMetrics.DeviceFault(nameof(IVirtioDevice.ReadConfig));
            VhostUserLog.DeviceFault(_logger, e, _device.DeviceId, nameof(IVirtioDevice.ReadConfig));
            Reply(VhostUserRequest.GetConfig, []);
            return "the device failed to read its configuration";
        }

        Reply(VhostUserRequest.GetConfig, reply);
        return null;
    }

    private string? SetConfig(ReadOnlySpan<byte> payload)
    {
        if (ParseConfig(payload, out uint offset, out uint size, out uint flags) is { } error)
        {
            return error;
        }

        // Flags: 0 = written by the driver (VHOST_SET_CONFIG_TYPE_FRONTEND), 1 = migration.
        if (flags > 1)
        {
            return $"unknown SET_CONFIG flags 0x{flags:x}";
        }

        try
        {
            _device.WriteConfig(offset, payload.Slice(VhostUserWire.ConfigHeaderSize, (int)size));

            // The post-access step (IVirtioDevice contract); this thread holds no lock here.
            _device.AfterConfigWrite();
        }
        catch (Exception e)
        {
            VhostUserMetrics.DeviceFault(nameof(IVirtioDevice.WriteConfig));
            VhostUserLog.DeviceFault(_logger, e, _device.DeviceId, nameof(IVirtioDevice.WriteConfig));
            return "the device failed to write its configuration";
        }

        return null;
    }

    private string? SetBackendReqFd(ReadOnlySpan<byte> payload)
    {
        if ((_protocolFeatures & VhostUserProtocolFeatures.BackendReq) == 0)
        {
            return "BACKEND_REQ was not negotiated";
        }

        if (ExpectEmpty(payload, 1) is { } error)
        {
            return error;
        }

        SafeFileHandle channel = TakeFile(0);
        SafeFileHandle? old;
        lock (_channelLock)
        {
            old = _channel;
            _channel = channel;
        }

        old?.Dispose();
        return null;
    }

    private string? ParseVringState(ReadOnlySpan<byte> payload, out VhostUserRing ring, out uint num)
    {
        ring = null!;
        num = 0;
        if (Expect(payload, VhostUserWire.VringStateSize, 0) is { } error)
        {
            return error;
        }

        uint index = VhostUserWire.ReadUInt32(payload, 0);
        if (index >= (uint)_rings.Length)
        {
            return $"ring index {index} is not below the queue count {_rings.Length}";
        }

        ring = _rings[index];
        num = VhostUserWire.ReadUInt32(payload, 4);
        return null;
    }

    private string? ParseConfig(ReadOnlySpan<byte> payload, out uint offset, out uint size, out uint flags)
    {
        offset = 0;
        size = 0;
        flags = 0;
        if (payload.Length < VhostUserWire.ConfigHeaderSize)
        {
            return $"payload is {payload.Length} bytes, shorter than the config header";
        }

        if (_fileCount != 0)
        {
            return $"came with {_fileCount} file descriptors, expected 0";
        }

        offset = VhostUserWire.ReadUInt32(payload, 0);
        size = VhostUserWire.ReadUInt32(payload, 4);
        flags = VhostUserWire.ReadUInt32(payload, 8);
        if (size > VhostUserWire.MaxConfigSize || payload.Length != VhostUserWire.ConfigHeaderSize + (int)size)
        {
            return $"config size {size} does not match a {payload.Length}-byte payload (at most {VhostUserWire.MaxConfigSize})";
        }

        uint configSize = (uint)Math.Max(0, _device.ConfigSize);
        if ((_protocolFeatures & VhostUserProtocolFeatures.Config) == 0)
        {
            return "CONFIG was not negotiated";
        }

        if ((ulong)offset + size > configSize)
        {
            return $"config range [{offset}, +{size}) is outside the device's {configSize} bytes";
        }

        return null;
    }
}
