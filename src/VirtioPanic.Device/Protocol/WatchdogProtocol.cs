namespace VirtioPanic.Device.Protocol;

// Wire layouts of the three queues (spec/virtio-watchdog.md §6 "Device Operation"). All
// little-endian. Every offset below has a name here; code never indexes a wire buffer with a bare
// number. The control structures are §6.3 "Control requests", the notice §6.4 "Pretimeout
// notices", the record and its status §6.5.1 "Record layout".
//
// Control request (watchdogq, device-readable, 16 bytes)     Control response (device-writable, 16 bytes)
//   0x00 le16 command                                          0x00 le16 status
//   0x02 le16 reserved0                                        0x02 le16 flags
//   0x04 le32 value_ms                                         0x04 le32 timeout_ms
//   0x08 le64 reserved1                                        0x08 le32 pretimeout_ms
//                                                              0x0C le32 time_left_ms
//
// Event record (eventq, device-readable, 80-byte header + message + log tail)
//   0x00 le32 state (COMMITTED = 0x4D4D4F43)   0x18 le64 codes[5]
//   0x04 le16 type                             0x40 le16 message_len (<= 1024)
//   0x06 u8   code_count (<= 5)                0x42 le16 reserved0
//   0x07 u8   code_format (<= 2)               0x44 le32 log_tail_len (<= 16384, 0 without LOG_TAIL)
//   0x08 le32 sequence                         0x48 le64 reserved1
//   0x0C le32 vcpu_id (0xFFFFFFFF unknown)     0x50 message, then log tail
//   0x10 le64 guest_time_ns (0 unknown)
//
// Record status (eventq, first 8 bytes of the device-writable part)
//   0x00 u8 status  0x01 u8[3] reserved (zero)  0x04 le32 host_sequence
//
// Heartbeat (watchdogq, no device-readable buffer): the device writes u8 1 at 0x00 of the first buffer.
//
// Notice (noticeq, device-writable, 16 bytes)
//   0x00 le16 type (1 PRETIMEOUT)  0x02 le16 reserved (zero)  0x04 le32 time_left_ms  0x08 le32 timeout_ms  0x0C le32 pretimeout_ms
//   0x00 le16 type (2 VCPU_STALL)  0x02 le16 vcpu             0x04 le32 stalled_ms    0x08 le32 timeout_ms  0x0C le32 stage2_ms   (§6.12)
internal static class WatchdogProtocol
{
    internal const int WatchdogQueue = 0;
    internal const int EventQueue = 1;
    internal const int NoticeQueue = 2;
    internal const int QueueCount = 3;

    internal const ushort WatchdogQueueMaxSize = 256;
    internal const ushort EventQueueMaxSize = 256;
    internal const ushort NoticeQueueMaxSize = 256;   // User-Mode Linux asks for 256 entries on every queue

    // VIRTIO_WDT_CHAIN_MAX (spec §6.9, WDT-DEV-37): the most bytes one chain on any queue may
    // describe. The largest thing the device reads or writes is a record of 80 + 1024 + 16384 bytes
    // plus its 8-byte status; a chain beyond this is a ring error. It also keeps every buffer the
    // device touches far below the 2 GiB a span can address (GuestMemorySlice.Span).
    internal const uint MaxChainBytes = 65536;

    // Heartbeat (§6.2 "Heartbeats"): the device writes this byte at this offset of the first buffer.
    internal const int HeartbeatAckOffset = 0x00;
    internal const byte HeartbeatAck = 1;

    // Control (§6.3: struct virtio_wdt_ctrl_req, struct virtio_wdt_ctrl_resp).
    internal const int ControlRequestSize = 16;
    internal const int ControlResponseSize = 16;

    internal const int ControlRequestCommand = 0x00;
    internal const int ControlRequestValueMs = 0x04;

    internal const int ControlResponseStatus = 0x00;
    internal const int ControlResponseFlags = 0x02;
    internal const int ControlResponseTimeoutMs = 0x04;
    internal const int ControlResponsePretimeoutMs = 0x08;
    internal const int ControlResponseTimeLeftMs = 0x0C;

    internal const ushort CommandGetStatus = 1;
    internal const ushort CommandStart = 2;
    internal const ushort CommandStop = 3;
    internal const ushort CommandKeepalive = 4;
    internal const ushort CommandSetTimeout = 5;
    internal const ushort CommandSetPretimeout = 6;
    internal const ushort CommandSetNowayout = 7;

    internal const ushort StatusOk = 0;
    internal const ushort StatusUnsupported = 1;
    internal const ushort StatusInvalid = 2;
    internal const ushort StatusDenied = 3;
    internal const ushort StatusNotArmed = 4;

    internal const ushort FlagArmed = 0x1;
    internal const ushort FlagNowayout = 0x2;
    internal const ushort FlagExpired = 0x4;
    internal const ushort FlagPretimeoutFired = 0x8;

    // Event records.
    internal const uint RecordCommitted = 0x4D4D4F43;
    internal const int RecordHeaderSize = 80;
    internal const int MessageMax = 1024;
    internal const int LogTailMax = 16384;
    internal const int CodesMax = 5;
    internal const int RecordMax = RecordHeaderSize + MessageMax + LogTailMax;
    internal const int MaxPostedRecords = 16;
    internal const int MaxRecordBuffers = 8;
    internal const uint UnknownVcpu = 0xFFFFFFFF;

    // struct virtio_wdt_record (§6.5.1); the message starts right after the header (0x50).
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
    internal const byte RecordStatusMalformed = 2;
    internal const byte RecordStatusUnsupported = 3;

    // struct virtio_wdt_record_status (§6.5.1): the first 8 bytes of the writable part.
    internal const int RecordStatusSize = 8;
    internal const int RecordStatusCode = 0x00;
    internal const int RecordStatusHostSequence = 0x04;

    // Notices (§6.4: struct virtio_wdt_notice).
    internal const int NoticeSize = 16;
    internal const ushort NoticeTypePretimeout = 1;
    internal const ushort NoticeTypeVcpuStall = 2;
    internal const int NoticeVcpu = 0x02;
    internal const int NoticeStalledMs = 0x04;
    internal const int NoticeStage2Ms = 0x0C;
    internal const int NoticeType = 0x00;
    internal const int NoticeReserved = 0x02;
    internal const int NoticeTimeLeftMs = 0x04;
    internal const int NoticeTimeoutMs = 0x08;
    internal const int NoticePretimeoutMs = 0x0C;
}
