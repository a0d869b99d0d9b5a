using VirtioPanic.Device;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Fuzz.Targets;

// VirtioPciFunction.RestoreState and VirtioMmioTransport.RestoreState (and through them
// VirtioDeviceController.RestoreState and Virtqueue.RestoreState) on untrusted bytes: they
// return a SnapshotStatus and never throw. An accepted snapshot must leave a transport that
// takes guest accesses and saves a snapshot it accepts again.
//
// Input:
//   u8  options  bit 0: virtio-mmio, else virtio-pci; bit 1: a driver initialised the function
//                before the restore; bit 2: 4 MSI-X vectors (PCI), else INTx only
//   u16 image    length of the guest memory image that follows
//   image bytes
//   the snapshot, to the end
internal sealed class TransportRestoreTarget : IFuzzTarget
{
    private static readonly byte[] s_pciInitialize = new DriverScript(TransportKind.Pci).Initialize(WatchdogFeatures.All).ToArray();
    private static readonly byte[] s_mmioInitialize = new DriverScript(TransportKind.Mmio).Initialize(WatchdogFeatures.All).ToArray();
    private static readonly byte[] s_pciAfter = After(TransportKind.Pci);
    private static readonly byte[] s_mmioAfter = After(TransportKind.Mmio);
    private readonly FuzzGuestMemory _guest = new();

    public void Run(ReadOnlySpan<byte> input)
    {
        var reader = new FuzzInput(input);
        byte options = reader.U8();
        TransportKind kind = (options & 1) != 0 ? TransportKind.Mmio : TransportKind.Pci;
        _guest.Load(reader.Bytes(reader.U16()));
        ReadOnlySpan<byte> snapshot = reader.Rest();
        using var rig = new TransportRig(kind, _guest, (options & 4) != 0 ? 4 : 0);
        if ((options & 2) != 0)
        {
            var script = new FuzzInput(kind == TransportKind.Pci ? s_pciInitialize : s_mmioInitialize);
            TransportOps.Run(rig, ref script);
        }

        if (rig.RestoreState(snapshot) != SnapshotStatus.Ok)
        {
            return;
        }

        byte[] saved = rig.SaveState();
        SnapshotStatus again = rig.RestoreState(saved);
        if (again != SnapshotStatus.Ok)
        {
            throw Check.Violation($"{kind} RestoreState accepted a snapshot, then refused its own SaveState of the result: {again}");
        }

        var after = new FuzzInput(kind == TransportKind.Pci ? s_pciAfter : s_mmioAfter);
        TransportOps.Run(rig, ref after);
    }

    // What a resumed guest does first: kick every queue, read the configuration, let time pass.
    private static byte[] After(TransportKind kind) =>
        new DriverScript(kind)
            .Notify(0).Notify(1).Notify(2)
            .ReadConfigField(0, 4).ReadConfigField(4, 4)
            .Event(5).Event(0, 3000)
            .ToArray();
}
