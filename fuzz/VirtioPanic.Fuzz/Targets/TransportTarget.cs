namespace VirtioPanic.Fuzz.Targets;

// PCI or MMIO register dispatch with the watchdog device behind it: configuration space, BARs,
// guest-physical accesses, doorbells, resets, snapshots and the passage of time, all decoded from
// the input (TransportOps), over rings the input also writes.
//
// Input:
//   u8  options   bits 0-2: MSI-X vectors (PCI; 0 is INTx only)
//   u16 image     length of the guest memory image that follows (copied to guest address 0)
//   image bytes
//   ops until the end (TransportOps)
internal sealed class TransportTarget : IFuzzTarget
{
    private readonly TransportKind _kind;
    private readonly FuzzGuestMemory _guest = new();

    internal TransportTarget(TransportKind kind)
    {
        _kind = kind;
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        var reader = new FuzzInput(input);
        int vectors = reader.U8() & 7;
        _guest.Load(reader.Bytes(reader.U16()));
        using var rig = new TransportRig(_kind, _guest, vectors);
        TransportOps.Run(rig, ref reader);
    }
}
