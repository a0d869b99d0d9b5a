using VirtioPanic.Device.Protocol;
using VirtioPanic.Device;

namespace VirtioPanic.Fuzz.Targets;

// WatchdogDevice.RestoreState on untrusted bytes. It documents two exceptions for a bad image,
// InvalidDataException and NotSupportedException; anything else is a finding, and so is an
// accepted image that leaves the device unable to run, report its status, or save and restore
// itself again.
//
// Input:
//   u8  options  bit 0: a driver has initialised the device (virtio-mmio, every feature) before the
//                restore, so held records are re-validated against guest memory at once;
//                bit 1: a driver initialises it after the restore instead (the held records are
//                validated at activation); bit 2: eventq kicked after; bits 3-7: seconds of VM
//                run time after the resume (times 4)
//   u16 image    length of the guest memory image that follows
//   image bytes
//   the device state, to the end
internal sealed class DeviceRestoreTarget : IFuzzTarget
{
    private static readonly byte[] s_initialize = new DriverScript(TransportKind.Mmio).Initialize(WatchdogFeatures.All).ToArray();
    private readonly FuzzGuestMemory _guest = new();

    public void Run(ReadOnlySpan<byte> input)
    {
        var reader = new FuzzInput(input);
        byte options = reader.U8();
        _guest.Load(reader.Bytes(reader.U16()));
        ReadOnlySpan<byte> state = reader.Rest();
        using var rig = new TransportRig(TransportKind.Mmio, _guest, 0);
        if ((options & 1) != 0)
        {
            Initialize(rig);
        }

        try
        {
            rig.Device.RestoreState(state);
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException)
        {
            return;
        }

        if ((options & 2) != 0)
        {
            Initialize(rig);
        }

        if ((options & 4) != 0)
        {
            _ = rig.Mmio!.NotifyQueue(WatchdogProtocol.EventQueue);
        }

        rig.Device.Resume();
        rig.Time.Advance(TimeSpan.FromSeconds((options >> 3) * 4));
        _ = rig.Device.GetStatus();
        TransportOps.DeviceRoundTrip(rig.Device);
        rig.DrainEvents();
    }

    private static void Initialize(TransportRig rig)
    {
        var script = new FuzzInput(s_initialize);
        TransportOps.Run(rig, ref script);
    }
}
