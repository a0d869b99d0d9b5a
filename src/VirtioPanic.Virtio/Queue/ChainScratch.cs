using System.Runtime.CompilerServices;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Queue;

// A split queue's chain scratch: the buffers of the chain being popped, translated. It starts at
// InitialScratch entries (a watchdog device's three 256-entry queues keep 576 bytes, not 18 KiB)
// and grows, doubling, up to MaxChainLength when a chain needs more: the slow path that meets a
// full scratch grows it and walks that chain again from its head (nothing of the first walk is
// kept). Consumer-private; chains made from the old array are dead by then (a chain is valid until
// the next pop). An object of its own so that SplitVirtqueue keeps one reference field: an extra
// int field there moved its hot fields and cost the per-chain round 3.5 ns (11.7 → 15.1 ns). The
// packed queue, made only when a driver negotiates the packed format, keeps a full-size array.
internal sealed class ChainScratch
{
    internal const int InitialScratch = 8;

    internal ChainScratch(int maxChainLength)
    {
        MaxChainLength = maxChainLength;
        Buffers = new GuestMemorySlice[Math.Min(maxChainLength, InitialScratch)];
    }

    internal GuestMemorySlice[] Buffers { get; private set; }

    internal int MaxChainLength { get; }

    // Doubles the capacity (up to MaxChainLength); false when it is there already.
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal bool TryGrow()
    {
        GuestMemorySlice[] buffers = Buffers;
        if (buffers.Length >= MaxChainLength)
        {
            return false;
        }

        Array.Resize(ref buffers, (int)Math.Min(MaxChainLength, buffers.Length * 2L));
        Buffers = buffers;
        return true;
    }
}
