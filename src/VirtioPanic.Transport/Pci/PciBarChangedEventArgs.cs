namespace VirtioPanic.Transport.Pci;

/// <summary>
/// Raised when a BAR moves or memory decoding is switched on or off: unmap <see cref="Previous"/>
/// (if it was enabled) and map <see cref="Current"/> (if it is enabled) in the hypervisor's MMIO
/// dispatch.
/// </summary>
public sealed class PciBarChangedEventArgs : EventArgs
{
    /// <summary>Creates the event arguments.</summary>
    /// <param name="previous">The mapping reported before.</param>
    /// <param name="current">The mapping now.</param>
    public PciBarChangedEventArgs(PciBarMapping previous, PciBarMapping current)
    {
        Previous = previous;
        Current = current;
    }

    /// <summary>The mapping reported before this change.</summary>
    public PciBarMapping Previous { get; }

    /// <summary>The mapping now.</summary>
    public PciBarMapping Current { get; }
}
