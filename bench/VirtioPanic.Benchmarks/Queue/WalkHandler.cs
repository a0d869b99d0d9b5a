using System.Runtime.CompilerServices;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

// The benchmark "device": walks every buffer of each chain (summing lengths so nothing is dead
// code) and completes it at once with 0 bytes written. Inlined into the engine's loops as a
// device's small handler would be (the JIT does not inline a method with a loop on its own).
internal struct WalkHandler : IDescriptorChainHandler
{
    internal uint Total;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Handle(scoped in DescriptorChain chain, out uint writtenLength)
    {
        foreach (GuestMemorySlice buffer in chain.Buffers)
        {
            Total += buffer.Length;
        }

        writtenLength = 0;
        return true;
    }
}
