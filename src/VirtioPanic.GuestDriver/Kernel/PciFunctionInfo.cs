namespace VirtioPanic.GuestDriver.Kernel;

// What enumeration learned about one function on bus 0 (Linux struct pci_dev, reduced).
internal sealed class PciFunctionInfo
{
    internal PciFunctionInfo(int device, ushort vendorId, ushort deviceId)
    {
        Device = device;
        VendorId = vendorId;
        DeviceId = deviceId;
    }

    internal int Device { get; }

    internal ushort VendorId { get; }

    internal ushort DeviceId { get; }

    internal ulong[] BarAddress { get; } = new ulong[6];

    internal ulong[] BarSize { get; } = new ulong[6];

    internal int InterruptPin { get; set; }

    internal int InterruptLine { get; set; } = -1;

    public override string ToString() => $"pci 0000:00:{Device:x2}.0 [{VendorId:x4}:{DeviceId:x4}]";
}
