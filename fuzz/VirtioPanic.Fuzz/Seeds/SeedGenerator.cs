using System.Buffers.Binary;
using System.Text;
using VirtioPanic.Device.Protocol;
using VirtioPanic.Device;
using VirtioPanic.Fuzz.Targets;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.VhostUser;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Fuzz;

// Writes the seed corpora, fuzz/corpus/TARGET/NAME, each a small well-formed input of its
// target's format (the target's header comment) that reaches deep: rings with valid chains,
// a driver initialisation, a vhost-user conversation, real snapshots. Deterministic: running it
// again rewrites the same bytes (`VirtioPanic.Fuzz seeds fuzz/corpus`, see fuzz/README.md).
internal static class SeedGenerator
{
    private const ushort Next = 1;
    private const ushort Write = 2;
    private const ushort Indirect = 4;
    private const ushort PackedAvail = 1 << 7;

    internal static void WriteAll(string directory)
    {
        Seed(directory, "split", "two-chains", Queue(0x04, 0, RingsSplit(indirect: false), [0x00, 0x10, 0x02, 0x03, 0x05, 0x02, 0x07, 0x00]));
        Seed(directory, "split", "indirect-event-idx", Queue(0x04, 0x03, RingsSplit(indirect: true), [0x31, 0x02, 0x06, 0x02, 0x01, 0x03, 0x00, 0x10, 0x00, 0x04, 0x03, 0x08, 0x00]));
        Seed(directory, "split", "narrow-queue", Queue(0x04, 0x01, RingsSplit(indirect: true), [0x00, 0x00, 0x02], narrow: true));
        Seed(directory, "packed", "two-chains", Queue(0x04, 0, RingsPacked(indirect: false), [0x00, 0x10, 0x02, 0x03, 0x05, 0x02, 0x07, 0x00]));
        Seed(directory, "packed", "indirect-event-idx", Queue(0x04, 0x03, RingsPacked(indirect: true), [0x31, 0x02, 0x04, 0x03, 0x08, 0x00]));
        Seed(directory, "packed", "odd-size", Queue(0x85, 0x01, RingsPacked(indirect: true), [0x00, 0x00, 0x02]));
        Seed(directory, "restore-queue", "split-in-flight", Queue(0x04, 0, RingsSplit(indirect: false), [0x00, 0x15, 0x02], restore: (1, 0, 1)));
        Seed(directory, "restore-queue", "packed-wrapped", Queue(0x04, 0x04, RingsPacked(indirect: false), [0x00, 0x02], restore: (1, 0, 1 | 2 | 4)));
        Seed(directory, "restore-queue", "not-ready", Queue(0x04, 0, [], [0x00], restore: (0, 0, 0)));

        Seed(directory, "record", "panic-with-message", [0x00, .. Record(WatchdogProtocol.RecordTypePanic, "Kernel panic - not syncing: fuzz", codes: 2, logTail: null)]);
        Seed(directory, "record", "crash-loaded-log-tail", [0x01, .. Record(WatchdogProtocol.RecordTypeCrashLoaded, "kdump", codes: 5, logTail: "[ 1.0] oops\n")]);
        Seed(directory, "record", "short-readable", [0x02, 0x40, 0x00, 0x00, 0x00, .. Record(WatchdogProtocol.RecordTypeShutdown, "", codes: 0, logTail: null)]);

        foreach (TransportKind kind in new[] { TransportKind.Pci, TransportKind.Mmio })
        {
            string target = kind == TransportKind.Pci ? "pci" : "mmio";
            byte[] image = TransportImage();
            Seed(directory, target, "control-events-notices", Transport(kind == TransportKind.Pci ? (byte)2 : (byte)0, image,
                new DriverScript(kind).Initialize(WatchdogFeatures.All).Notify(0).Notify(1).Notify(2).Event(0, 3000).Event(2).ToArray()));
            Seed(directory, target, "heartbeat-baseline", Transport(0, HeartbeatImage(),
                new DriverScript(kind).Initialize(WatchdogFeatures.None, queues: 1).Notify(0).Event(0, 200).Notify(0).Event(1).ToArray()));
            Seed(directory, target, "panic-config-write", Transport(0, image,
                new DriverScript(kind).Initialize(WatchdogFeatures.PanicConfig | WatchdogFeatures.BootReason)
                    .ReadConfigField(WatchdogConfig.BootReason, 4).WriteConfigField(WatchdogConfig.PanicEvents, 4, WatchdogConfig.PanicEventPanicked)
                    .Event(6).Event(9).ToArray()));

            byte[] snapshot = TransportSnapshot(kind, image);
            Seed(directory, "restore-transport", $"{target}-live-rings", [kind == TransportKind.Pci ? (byte)0x04 : (byte)0x01, .. Image(image), .. snapshot]);
            Seed(directory, "restore-transport", $"{target}-into-initialised", [kind == TransportKind.Pci ? (byte)0x06 : (byte)0x03, .. Image(image), .. snapshot]);
        }

        Seed(directory, "restore-transport", "pci-power-on", [0x00, 0x00, 0x00, .. PowerOnSnapshot(TransportKind.Pci)]);

        byte[] deviceImage = TransportImage(commitRecord: false);
        Seed(directory, "restore-device", "armed-with-held-records", [0x01 | (3 << 3), .. Image(deviceImage), .. DeviceSnapshot(deviceImage)]);
        Seed(directory, "restore-device", "restore-then-activate", [0x02 | 0x04 | (10 << 3), .. Image(deviceImage), .. DeviceSnapshot(deviceImage)]);
        Seed(directory, "restore-device", "power-on", [0x00, 0x00, 0x00, .. PowerOnDeviceState()]);

        Seed(directory, "vhost-user", "negotiate-and-kick", VhostConversation(kick: true));
        Seed(directory, "vhost-user", "negotiate-get-config", VhostConversation(kick: false));
        Seed(directory, "vhost-user", "truncated-no-image", [0x00, 0x00, .. VhostConversation(kick: false, image: false).AsSpan(2, 160)]);
    }

    private static void Seed(string directory, string target, string name, byte[] input)
    {
        string folder = Path.Combine(directory, target);
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(Path.Combine(folder, name), input);
    }

    private static byte[] Image(byte[] image) => [(byte)image.Length, (byte)(image.Length >> 8), .. image];

    // VirtqueueTarget: rings at 0x000 (descriptors), 0x100 (driver area), 0x200 (device area), buffers from 0x300.
    private static byte[] Queue(byte size, byte features, byte[] image, byte[] ops, bool narrow = false, (ushort Avail, ushort Used, byte Bits)? restore = null)
    {
        var header = new List<byte> { size, features, narrow ? (byte)1 : (byte)0, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02 };
        if (restore is { } r)
        {
            header.AddRange([(byte)r.Avail, (byte)(r.Avail >> 8), (byte)r.Used, (byte)(r.Used >> 8), r.Bits]);
        }

        return [.. header, .. Image(image), .. ops];
    }

    private static byte[] RingsSplit(bool indirect)
    {
        var ring = new RingImage();
        ring.SplitDescriptor(0, 0, 0x300, 64, Next, 1).SplitDescriptor(0, 1, 0x340, 64, Write);
        if (indirect)
        {
            ring.SplitDescriptor(0, 2, 0x3C0, 32, Indirect)
                .SplitDescriptor(0x3C0, 0, 0x380, 16, Next, 1).SplitDescriptor(0x3C0, 1, 0x3A0, 16, Write);
        }
        else
        {
            ring.SplitDescriptor(0, 2, 0x380, 32, 0);
        }

        return ring.SplitAvail(0x100, 0, 2).Bytes(0x300, "readable bytes"u8).ToArray();
    }

    private static byte[] RingsPacked(bool indirect)
    {
        var ring = new RingImage();
        ring.PackedDescriptor(0, 0, 0x300, 64, 0, PackedAvail | Next).PackedDescriptor(0, 1, 0x340, 64, 0, PackedAvail | Write);
        if (indirect)
        {
            ring.PackedDescriptor(0, 2, 0x3C0, 32, 1, PackedAvail | Indirect)
                .PackedDescriptor(0x3C0, 0, 0x380, 16, 0, 0).PackedDescriptor(0x3C0, 1, 0x3A0, 16, 0, Write);
        }
        else
        {
            ring.PackedDescriptor(0, 2, 0x380, 32, 1, PackedAvail);
        }

        return ring.Bytes(0x300, "readable bytes"u8).ToArray();
    }

    private static byte[] Record(ushort type, string message, int codes, string? logTail)
    {
        byte[] text = Encoding.UTF8.GetBytes(message);
        byte[] tail = logTail is null ? [] : Encoding.UTF8.GetBytes(logTail);
        byte[] record = new byte[WatchdogProtocol.RecordHeaderSize + text.Length + tail.Length];
        Span<byte> r = record;
        BinaryPrimitives.WriteUInt32LittleEndian(r[WatchdogProtocol.RecordState..], WatchdogProtocol.RecordCommitted);
        BinaryPrimitives.WriteUInt16LittleEndian(r[WatchdogProtocol.RecordType..], type);
        r[WatchdogProtocol.RecordCodeCount] = (byte)codes;
        r[WatchdogProtocol.RecordCodeFormat] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(r[WatchdogProtocol.RecordSequence..], 7);
        BinaryPrimitives.WriteUInt32LittleEndian(r[WatchdogProtocol.RecordVcpu..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(r[WatchdogProtocol.RecordGuestTime..], 1_000_000_000);
        for (int i = 0; i < codes; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(r[(WatchdogProtocol.RecordCodes + (8 * i))..], 0xDEAD_0000UL + (ulong)i);
        }

        BinaryPrimitives.WriteUInt16LittleEndian(r[WatchdogProtocol.RecordMessageLength..], (ushort)text.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(r[WatchdogProtocol.RecordLogTailLength..], (uint)tail.Length);
        text.CopyTo(r[WatchdogProtocol.RecordHeaderSize..]);
        tail.CopyTo(r[(WatchdogProtocol.RecordHeaderSize + text.Length)..]);
        return record;
    }

    private static byte[] Transport(byte options, byte[] image, byte[] ops) => [options, .. Image(image), .. ops];

    // DriverScript's layout: a control request pair on watchdogq (set timeout 30 s, then start),
    // one event record on eventq, one notice buffer on noticeq.
    private static byte[] TransportImage(bool commitRecord = true)
    {
        var ring = new RingImage();
        ulong b0 = DriverScript.Buffers(0);
        ring.SplitDescriptor(DriverScript.Descriptors(0), 0, b0, 16, Next, 1).SplitDescriptor(DriverScript.Descriptors(0), 1, b0 + 0x10, 16, Write)
            .SplitDescriptor(DriverScript.Descriptors(0), 2, b0 + 0x20, 16, Next, 3).SplitDescriptor(DriverScript.Descriptors(0), 3, b0 + 0x30, 16, Write)
            .SplitAvail(DriverScript.Avail(0), 0, 2)
            .U16(b0, WatchdogProtocol.CommandSetTimeout).U32(b0 + 4, 30_000)
            .U16(b0 + 0x20, WatchdogProtocol.CommandStart);

        ulong b1 = DriverScript.Buffers(1);
        byte[] record = Record(WatchdogProtocol.RecordTypePanic, "panic from the fuzz seed", codes: 1, logTail: null);
        if (!commitRecord)
        {
            record[0] = 0;   // still being written: the device holds the buffer
        }

        ring.SplitDescriptor(DriverScript.Descriptors(1), 0, b1, (uint)record.Length, Next, 1).SplitDescriptor(DriverScript.Descriptors(1), 1, b1 + 0x80, 8, Write)
            .SplitAvail(DriverScript.Avail(1), 0)
            .Bytes(b1, record);

        ulong b2 = DriverScript.Buffers(2);
        ring.SplitDescriptor(DriverScript.Descriptors(2), 0, b2, 16, Write).SplitAvail(DriverScript.Avail(2), 0);
        return ring.ToArray();
    }

    // Baseline (no feature): the Cloud Hypervisor heartbeat, one writable buffer per pet.
    private static byte[] HeartbeatImage() =>
        new RingImage()
            .SplitDescriptor(DriverScript.Descriptors(0), 0, DriverScript.Buffers(0), 4, Write)
            .SplitDescriptor(DriverScript.Descriptors(0), 1, DriverScript.Buffers(0) + 0x10, 4, Write)
            .SplitAvail(DriverScript.Avail(0), 0, 1)
            .ToArray();

    private static byte[] TransportSnapshot(TransportKind kind, byte[] image)
    {
        var guest = new FuzzGuestMemory();
        guest.Load(image);
        using var rig = new TransportRig(kind, guest, kind == TransportKind.Pci ? 4 : 0);
        var script = new FuzzInput(new DriverScript(kind).Initialize(WatchdogFeatures.All).Notify(0).Notify(1).Notify(2).ToArray());
        TransportOps.Run(rig, ref script);
        return rig.SaveState();
    }

    private static byte[] PowerOnSnapshot(TransportKind kind)
    {
        using var rig = new TransportRig(kind, new FuzzGuestMemory(), 0);
        return rig.SaveState();
    }

    private static byte[] DeviceSnapshot(byte[] image)
    {
        var guest = new FuzzGuestMemory();
        guest.Load(image);
        using var rig = new TransportRig(TransportKind.Mmio, guest, 0);
        var script = new FuzzInput(new DriverScript(TransportKind.Mmio).Initialize(WatchdogFeatures.All).Notify(0).Notify(1).Event(0, 500).ToArray());
        TransportOps.Run(rig, ref script);
        return rig.Device.SaveState();
    }

    private static byte[] PowerOnDeviceState()
    {
        using var rig = new TransportRig(TransportKind.Mmio, new FuzzGuestMemory(), 0);
        return rig.Device.SaveState();
    }

    // VhostUserTarget: features, protocol features, a memory table (the 64 KiB memfd at front-end
    // address UserBase), three split rings in DriverScript's layout, kicks, then config and ring
    // base queries.
    private static byte[] VhostConversation(bool kick, bool image = true)
    {
        const ulong UserBase = 0x7F00_0000_0000;
        var messages = new List<byte>();
        void Message(VhostUserRequest request, byte flags, byte fds, ReadOnlySpan<byte> payload)
        {
            messages.AddRange(BitConverter.GetBytes((uint)request));
            messages.Add(flags);
            messages.Add(fds);
            messages.AddRange(BitConverter.GetBytes((ushort)payload.Length));
            messages.AddRange(payload.ToArray());
        }

        byte[] U64(ulong value) => BitConverter.GetBytes(value);
        byte[] State(uint index, uint num) => [.. BitConverter.GetBytes(index), .. BitConverter.GetBytes(num)];

        const byte NeedReply = 0x08;
        Message(VhostUserRequest.GetFeatures, 0, 0, []);
        Message(VhostUserRequest.SetFeatures, NeedReply, 0, U64(VirtioFeatures.Version1 | VhostUserBackend.ProtocolFeaturesBit | (ulong)WatchdogFeatures.All));
        Message(VhostUserRequest.GetProtocolFeatures, 0, 0, []);
        Message(VhostUserRequest.SetProtocolFeatures, 0, 0, U64((ulong)(VhostUserProtocolFeatures.Mq | VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.Config)));
        Message(VhostUserRequest.SetOwner, 0, 0, []);
        Message(VhostUserRequest.GetQueueNum, 0, 0, []);
        Message(VhostUserRequest.SetMemTable, NeedReply, 1 /* one fd: the 64 KiB memfd */,
            [.. BitConverter.GetBytes(1u), .. BitConverter.GetBytes(0u), .. U64(0), .. U64(VhostUserTarget.RegionSize), .. U64(UserBase), .. U64(0)]);
        for (uint q = 0; q < 3; q++)
        {
            Message(VhostUserRequest.SetVringNum, 0, 0, State(q, DriverScript.QueueSize));
            Message(VhostUserRequest.SetVringAddr, NeedReply, 0,
                [.. BitConverter.GetBytes(q), .. BitConverter.GetBytes(0u), .. U64(UserBase + DriverScript.Descriptors((int)q)),
                 .. U64(UserBase + DriverScript.Used((int)q)), .. U64(UserBase + DriverScript.Avail((int)q)), .. U64(0)]);
            Message(VhostUserRequest.SetVringBase, 0, 0, State(q, 0));
            Message(VhostUserRequest.SetVringCall, 0, 1 | (1 << 2) /* a fresh eventfd */, U64(q));
            Message(VhostUserRequest.SetVringKick, 0, (byte)(1 | ((kick ? 2 : 1) << 2)) /* signalled: a pending kick */, U64(q));
            Message(VhostUserRequest.SetVringEnable, 0, 0, State(q, 1));
        }

        Message(VhostUserRequest.GetConfig, 0, 0, [.. BitConverter.GetBytes(0u), .. BitConverter.GetBytes((uint)WatchdogConfig.Size), .. BitConverter.GetBytes(0u), .. new byte[WatchdogConfig.Size]]);
        Message(VhostUserRequest.GetVringBase, 0, 0, State(0, 0));
        return [.. Image(image ? TransportImage() : []), .. messages];
    }
}
