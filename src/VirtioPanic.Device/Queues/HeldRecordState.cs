using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Queues;

// The saved form of a held eventq buffer: guest addresses, re-validated on restore.
internal readonly record struct HeldRecordState(ChainToken Token, int Readable, HeldBufferState[] Buffers);
