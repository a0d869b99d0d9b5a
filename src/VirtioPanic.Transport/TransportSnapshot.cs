using VirtioPanic.Snapshots;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Transport;

// What every transport snapshot starts with: le32 magic (one per transport), le16 version. The
// rest of each layout is in the transport's own Snapshot code (VirtioPciFunction.Snapshot.cs,
// VirtioMmioTransport.cs).
internal static class TransportSnapshot
{
    // Malformed for a short image or another magic, UnsupportedVersion for another version.
    internal static SnapshotStatus ReadHeader(ref SnapshotReader reader, uint magic, ushort version)
    {
        uint readMagic = reader.ReadUInt32();
        ushort readVersion = reader.ReadUInt16();
        if (reader.Failed || readMagic != magic)
        {
            return SnapshotStatus.Malformed;
        }

        return readVersion == version ? SnapshotStatus.Ok : SnapshotStatus.UnsupportedVersion;
    }
}
