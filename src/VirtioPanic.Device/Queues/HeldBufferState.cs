namespace VirtioPanic.Device.Queues;

internal readonly record struct HeldBufferState(ulong Address, uint Length);
