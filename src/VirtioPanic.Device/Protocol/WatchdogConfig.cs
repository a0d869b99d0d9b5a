namespace VirtioPanic.Device.Protocol;

// The device configuration space (spec/virtio-watchdog.md §4), 20 bytes, little-endian:
//
//   off   type  field                access                          governed by
//   0x00  le32  boot_reason          R; W of 0 clears                VIRTIO_WDT_F_BOOT_REASON (reads 0 otherwise)
//   0x04  le32  default_timeout_ms   R                               always
//   0x08  le32  panic_events         R: supported (7); W: report     VIRTIO_WDT_F_PANIC_CONFIG (reads 0 otherwise)
//   0x0C  le32  min_timeout_ms       R                               VIRTIO_WDT_F_CONTROL (= default otherwise)
//   0x10  le32  max_timeout_ms       R                               VIRTIO_WDT_F_CONTROL (= default otherwise)
//   0x14  le32  vcpu_count           R                               VIRTIO_WDT_F_VCPU_STALL (absent otherwise: 20 bytes)
//   0x18  le32  vcpu_timeout_ms      R                               VIRTIO_WDT_F_VCPU_STALL
//   0x1C  le32  vcpu_stage2_ms       R                               VIRTIO_WDT_F_VCPU_STALL
//   0x20  le32  vcpu_heartbeat       W: PET/OFFLINE (§6.12); R: 0    VIRTIO_WDT_F_VCPU_STALL
//
// virtio 1.2 §2.5 "Device Configuration Space"; the first eight bytes are what a transport that
// forwards only a short configuration window (QEMU 7.2's vhost-user-gpio stub) still shows.
internal static class WatchdogConfig
{
    internal const int Size = 20;

    // With VIRTIO_WDT_F_VCPU_STALL offered (spec §4): four more fields.
    internal const int VcpuStallSize = 36;

    // Every field is one le32.
    internal const uint FieldSize = 4;

    internal const uint BootReason = 0x00;
    internal const uint DefaultTimeoutMs = 0x04;
    internal const uint PanicEvents = 0x08;
    internal const uint MinTimeoutMs = 0x0C;
    internal const uint MaxTimeoutMs = 0x10;
    internal const uint VcpuCount = 0x14;
    internal const uint VcpuTimeoutMs = 0x18;
    internal const uint VcpuStage2Ms = 0x1C;
    internal const uint VcpuHeartbeat = 0x20;

    // vcpu_heartbeat (spec §6.12): bits 0-15 index, 16-30 sequence (ignored), 31 OFFLINE.
    internal const uint HeartbeatIndexMask = 0xFFFF;
    internal const uint HeartbeatOffline = 0x8000_0000;

    // pvpanic-compatible event bits (QEMU docs/specs/pvpanic.rst; Linux uapi misc/pvpanic.h).
    internal const uint PanicEventPanicked = 0x1;
    internal const uint PanicEventCrashLoaded = 0x2;
    internal const uint PanicEventShutdown = 0x4;
    internal const uint SupportedPanicEvents = PanicEventPanicked | PanicEventCrashLoaded | PanicEventShutdown;
}
