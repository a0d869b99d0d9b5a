namespace VirtioPanic.Device;

// struct virtio_wdt_ctrl_resp (spec §6.3), before encoding.
internal readonly record struct ControlResponse(ushort Status, ushort Flags, uint TimeoutMs, uint PretimeoutMs, uint TimeLeftMs);
