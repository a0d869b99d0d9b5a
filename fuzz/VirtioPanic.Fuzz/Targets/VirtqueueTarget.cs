using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Fuzz.Targets;

// The device side of one virtqueue (split or packed) against guest memory the input writes: pop,
// batch, complete, flush, notification suppression, save/restore, reset, with guest writes
// between the steps (a driver racing the device). Virtqueue documents that guest data never
// makes it throw; the target also checks what every popped chain promises.
//
// Input:
//   u8  size       bit 7 clear: 1 << (bits 0-3 % 9), a power of two up to 256; set: bits 0-6 raw
//                  (0, odd sizes: packed accepts any size, split must refuse them)
//   u8  features   bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 3 IN_ORDER (refused); PACKED is the
//                  target's (restore-queue: bit 2 too)
//   u8  queue      bit 0: the queue that allows only 4 buffers per chain
//   u16 descriptor area, u16 driver area, u16 device area   guest addresses
//   restore-queue only: u16 next avail, u16 next used, u8 bit 0 ready, bit 1 avail wrap,
//                  bit 2 used wrap (a VirtqueueState for RestoreState instead of Activate)
//   u16 image      length of the memory image that follows, copied to guest address 0
//   image bytes
//   ops until the end (VirtqueueOps)
internal sealed class VirtqueueTarget : IFuzzTarget
{
    internal enum Mode
    {
        Split,
        Packed,
        Restore,
    }

    private readonly Mode _mode;
    private readonly FuzzGuestMemory _guest = new();
    private readonly Virtqueue _wide = new(256);
    private readonly Virtqueue _narrow = new(256, maxChainLength: 4);

    internal VirtqueueTarget(Mode mode)
    {
        _mode = mode;
    }

    public void Run(ReadOnlySpan<byte> input)
    {
        var reader = new FuzzInput(input);
        byte sizeSelector = reader.U8();
        byte featureBits = reader.U8();
        Virtqueue queue = (reader.U8() & 1) != 0 ? _narrow : _wide;
        ushort size = (sizeSelector & 0x80) != 0 ? (ushort)(sizeSelector & 0x7F) : (ushort)(1 << ((sizeSelector & 0x0F) % 9));
        var config = new VirtqueueConfig(size, reader.U16(), reader.U16(), reader.U16());
        var features = (VirtqueueFeatures)(featureBits & 0x0B);
        if (_mode == Mode.Packed)
        {
            features |= VirtqueueFeatures.Packed;
        }

        VirtqueueState state = default;
        if (_mode == Mode.Restore)
        {
            features = (VirtqueueFeatures)(featureBits & 0x0F);
            ushort nextAvail = reader.U16();
            ushort nextUsed = reader.U16();
            byte bits = reader.U8();
            state = new VirtqueueState
            {
                Format = (features & VirtqueueFeatures.Packed) != 0 ? VirtqueueFormat.Packed : VirtqueueFormat.Split,
                Features = features,
                Ready = (bits & 1) != 0,
                Config = config,
                NextAvail = nextAvail,
                NextUsed = nextUsed,
                AvailWrapCounter = (bits & 2) != 0,
                UsedWrapCounter = (bits & 4) != 0,
            };
        }

        _guest.Load(reader.Bytes(reader.U16()));
        GuestMemory memory = _guest.Memory;
        VirtqueueStatus status = _mode == Mode.Restore ? queue.RestoreState(memory, state) : queue.Activate(memory, config, features);
        if (status != VirtqueueStatus.Ok || !queue.IsReady)
        {
            queue.Reset();
            return;
        }

        var ops = new VirtqueueOps(queue, _guest);
        try
        {
            ops.Run(ref reader, config, features);
        }
        finally
        {
            queue.Reset();
        }
    }
}
