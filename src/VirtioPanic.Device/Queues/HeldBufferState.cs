namespace VirtioPanic.Device;

internal readonly record struct HeldBufferState(ulong Address, uint Length);
