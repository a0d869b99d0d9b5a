namespace VirtioPanic.GuestDriver.Watchdog;

// The guest-visible contract of spec/virtio-watchdog.md, as the driver side needs it. All
// little-endian.
//
// Configuration (§4)          Control request (§6.3, readable)  Control response (§6.3, writable)
//   0x00 le32 boot_reason       0x00 le16 command                 0x00 le16 status
//   0x04 le32 default_timeout   0x02 le16 reserved0 (0)           0x02 le16 flags
//   0x08 le32 panic_events      0x04 le32 value_ms                0x04 le32 timeout_ms
//   0x0C le32 min_timeout_ms    0x08 le64 reserved1 (0)           0x08 le32 pretimeout_ms
//   0x10 le32 max_timeout_ms                                      0x0C le32 time_left_ms
//   0x14 le32 vcpu_count, 0x18 le32 vcpu_timeout_ms, 0x1C le32 vcpu_stage2_ms, 0x20 le32 vcpu_heartbeat (W):
//        VIRTIO_WDT_F_VCPU_STALL only (§4, §6.12); vcpu_heartbeat = index (bits 0-15) | sequence
//        (bits 16-30, per CPU, differs from that CPU's previous write) | OFFLINE (bit 31); never 0.
//
// Record (§6.5.1, readable): 0x00 state, 0x04 type, 0x06 code_count, 0x07 code_format,
// 0x08 sequence, 0x0C vcpu_id, 0x10 guest_time_ns, 0x18 codes[5], 0x40 message_len,
// 0x42 reserved0, 0x44 log_tail_len, 0x48 reserved1, 0x50 message then log tail.
// Record status (writable): 0x00 u8 status, 0x01 u8[3] reserved, 0x04 le32 host_sequence.
// Notice (§6.4, writable): 0x00 type, 0x02 reserved, 0x04 time_left_ms, 0x08 timeout_ms, 0x0C pretimeout_ms.
// VCPU_STALL notice (§6.12): 0x00 type 2, 0x02 le16 vcpu, 0x04 stalled_ms, 0x08 timeout_ms, 0x0C stage2_ms.
internal static class WatchdogWire
{
    internal const int WatchdogQueue = 0;
    internal const int EventQueue = 1;
    internal const int NoticeQueue = 2;

    internal const uint ConfigBootReason = 0x00;
    internal const uint ConfigDefaultTimeout = 0x04;
    internal const uint ConfigPanicEvents = 0x08;
    internal const uint ConfigMinTimeout = 0x0C;
    internal const uint ConfigMaxTimeout = 0x10;
    internal const uint ConfigVcpuCount = 0x14;
    internal const uint ConfigVcpuTimeout = 0x18;
    internal const uint ConfigVcpuStage2 = 0x1C;
    internal const uint ConfigVcpuHeartbeat = 0x20;

    internal const int VcpuMax = 1024;
    internal const uint VcpuOffline = 1u << 31;
    internal const int VcpuSequenceShift = 16;
    internal const ushort VcpuSequenceMax = 0x7FFF;

    internal const int ControlSize = 16;
    internal const ushort CommandGetStatus = 1;
    internal const ushort CommandStart = 2;
    internal const ushort CommandStop = 3;
    internal const ushort CommandKeepalive = 4;
    internal const ushort CommandSetTimeout = 5;
    internal const ushort CommandSetPretimeout = 6;
    internal const ushort CommandSetNowayout = 7;

    internal const uint RecordCommitted = 0x4D4D4F43;
    internal const int RecordHeaderSize = 80;
    internal const int MessageMax = 1024;
    internal const int LogTailMax = 16384;
    internal const int CodesMax = 5;
    internal const int MaxPostedRecords = 16;
    internal const int RecordStatusSize = 8;
    internal const uint UnknownVcpu = 0xFFFF_FFFF;

    internal const int RecordState = 0x00;
    internal const int RecordType = 0x04;
    internal const int RecordCodeCount = 0x06;
    internal const int RecordCodeFormat = 0x07;
    internal const int RecordSequence = 0x08;
    internal const int RecordVcpu = 0x0C;
    internal const int RecordGuestTime = 0x10;
    internal const int RecordCodes = 0x18;
    internal const int RecordMessageLength = 0x40;
    internal const int RecordLogTailLength = 0x44;

    internal const ushort RecordTypePanic = 1;
    internal const ushort RecordTypeCrashLoaded = 2;
    internal const ushort RecordTypeShutdown = 3;

    internal const byte RecordStatusPending = 0;
    internal const byte RecordStatusAccepted = 1;

    internal const int NoticeSize = 16;
    internal const ushort NoticeTypePretimeout = 1;
    internal const ushort NoticeTypeVcpuStall = 2;

    internal const int HeartbeatSize = 8;
}
