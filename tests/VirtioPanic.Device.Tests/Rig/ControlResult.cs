namespace VirtioPanic.Device.Tests.Rig;

// A decoded struct virtio_wdt_ctrl_resp plus the used length the device returned.
internal readonly record struct ControlResult(ushort Status, ushort Flags, uint TimeoutMs, uint PretimeoutMs, uint TimeLeftMs, uint UsedLength)
{
    public bool Armed => (Flags & 0x1) != 0;

    public bool Nowayout => (Flags & 0x2) != 0;

    public bool Expired => (Flags & 0x4) != 0;

    public bool PretimeoutFired => (Flags & 0x8) != 0;
}
