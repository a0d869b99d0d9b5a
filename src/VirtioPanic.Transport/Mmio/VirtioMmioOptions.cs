namespace VirtioPanic.Transport.Mmio;

/// <summary>Options of a <see cref="VirtioMmioTransport"/>.</summary>
public sealed class VirtioMmioOptions : VirtioTransportOptions
{
    /// <summary>The VendorID register value (Linux reports it as the virtio vendor).</summary>
    /// <remarks>Defaults to 0x1AF4.</remarks>
    public uint VendorId { get; init; } = 0x1AF4;
}
