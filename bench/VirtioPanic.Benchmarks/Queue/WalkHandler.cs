using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Benchmarks.Queue;

// The benchmark "device": walks every buffer of each chain (summing lengths so nothing is dead
// code) and completes it at once with 0 bytes written.
internal struct WalkHandler : IDescriptorChainHandler
{
    internal uint Total;

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
