namespace VirtioPanic.Transport.Pci;

/// <summary>Identity and resources of a <see cref="VirtioPciFunction"/>.</summary>
public sealed class VirtioPciFunctionOptions : VirtioTransportOptions
{
    /// <summary>The 24-bit class code: base class, sub-class, programming interface.</summary>
    /// <remarks>Defaults to 0x088000 (system peripheral, other), what the i6300esb watchdog uses; virtio does not specify a class.</remarks>
    public uint ClassCode { get; init; } = 0x08_80_00;

    /// <summary>Subsystem vendor ID.</summary>
    /// <remarks>Defaults to 0x1AF4.</remarks>
    public ushort SubsystemVendorId { get; init; } = 0x1AF4;

    /// <summary>Subsystem ID (virtio 1.2 §4.1.2.1: non-transitional devices SHOULD use 0x40 or higher).</summary>
    /// <remarks>Defaults to 0x1100.</remarks>
    public ushort SubsystemId { get; init; } = 0x1100;

    /// <summary>Revision ID (virtio 1.2 §4.1.2.1: non-transitional devices SHOULD use 1 or higher).</summary>
    /// <remarks>Defaults to 1; 0 is refused.</remarks>
    public byte RevisionId { get; init; } = 1;

    /// <summary>MSI-X table size, 1 to 2048.</summary>
    /// <remarks>Defaults to 0, meaning one vector per queue plus one for configuration changes.</remarks>
    public int MsixVectorCount { get; init; }
}
