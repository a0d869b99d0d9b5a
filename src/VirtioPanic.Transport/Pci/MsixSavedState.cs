namespace VirtioPanic.Transport.Pci;

// A parsed and validated MSI-X snapshot, applied only once the whole function snapshot validated.
internal readonly record struct MsixSavedState(byte Flags, uint[] Entries, ulong[] Pending);
