namespace VirtioPanic.GuestDriver.Machine;

/// <summary>What <see cref="TestMachine.SaveSnapshot"/> captured: a copy of RAM and every transport's saved state.</summary>
public sealed class MachineSnapshot
{
    /// <summary>Creates a snapshot.</summary>
    /// <param name="ram">RAM contents.</param>
    /// <param name="pciFunctions">Saved state per PCI device number (empty for an empty slot).</param>
    /// <param name="mmioDevices">Saved state per virtio-mmio device.</param>
    public MachineSnapshot(byte[] ram, IReadOnlyList<byte[]> pciFunctions, IReadOnlyList<byte[]> mmioDevices)
    {
        ArgumentNullException.ThrowIfNull(ram);
        ArgumentNullException.ThrowIfNull(pciFunctions);
        ArgumentNullException.ThrowIfNull(mmioDevices);
        Ram = ram;
        PciFunctions = pciFunctions;
        MmioDevices = mmioDevices;
    }

    /// <summary>RAM contents.</summary>
    public byte[] Ram { get; }

    /// <summary>Each PCI slot's transport state (empty for an empty slot).</summary>
    public IReadOnlyList<byte[]> PciFunctions { get; }

    /// <summary>Each virtio-mmio device's transport state.</summary>
    public IReadOnlyList<byte[]> MmioDevices { get; }
}
