namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// What a device does with each chain in <see cref="Virtqueue.ProcessChains{THandler}"/>.
/// Implement it on a struct: the queue calls it through a constrained generic, so the call is
/// direct (and usually inlined), never virtual.
/// </summary>
public interface IDescriptorChainHandler
{
    /// <summary>Handles one validated chain.</summary>
    /// <param name="chain">The chain; valid only during this call.</param>
    /// <param name="writtenLength">Bytes written into the chain's writable buffers, when completing it now.</param>
    /// <returns>
    /// True to complete the chain now with <paramref name="writtenLength"/>; false to keep it (store
    /// <see cref="DescriptorChain.Token"/> and complete it later with <see cref="Virtqueue.AddUsed"/>,
    /// outside this call).
    /// </returns>
    bool Handle(scoped in DescriptorChain chain, out uint writtenLength);
}
