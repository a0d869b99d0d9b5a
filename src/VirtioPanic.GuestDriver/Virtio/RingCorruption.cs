namespace VirtioPanic.GuestDriver.Virtio;

/// <summary>Ways a misbehaving guest corrupts a ring (what the device's ring validation must catch).</summary>
public enum RingCorruption
{
    /// <summary>A chain whose buffer lies outside guest memory.</summary>
    AddressOutsideMemory,

    /// <summary>Split ring: an available-ring entry naming a descriptor beyond the table.</summary>
    DescriptorOutOfRange,

    /// <summary>Split ring: avail.idx moved more than the queue size ahead of the device.</summary>
    AvailIndexRunaway,

    /// <summary>Split ring: a chain whose NEXT links loop back to its head.</summary>
    LoopedChain,
}
