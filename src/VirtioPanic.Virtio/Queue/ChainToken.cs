namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// What a device keeps of a popped chain to complete it later: the id the used entry carries
/// (split: head index; packed: buffer id) and, for packed rings, how many ring slots the chain took.
/// </summary>
/// <param name="Id">Split: head descriptor index. Packed: buffer id.</param>
/// <param name="SlotCount">Ring slots the chain occupies (packed); 1 for split.</param>
public readonly record struct ChainToken(ushort Id, ushort SlotCount);
