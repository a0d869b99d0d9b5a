using System.Numerics;

namespace VirtioPanic.Transport.Pci;

// Where everything lives, fixed at construction (virtio 1.2 §4.1.4; reference layout QEMU's).
//
// BAR0/1 (64-bit memory, virtio structures)        BAR2/3 (64-bit memory, MSI-X)
//   0x0000 common configuration (64 bytes)           0x0000 table (16 bytes per vector)
//   0x1000 ISR status (1 byte)                       page after the table: PBA
//   0x2000 device configuration (ConfigSize)
//   0x3000 notify: queue q at 0x3000 + 4 q (notify_off_multiplier 4, queue_notify_off = q)
//
// Configuration space capability list, from 0x40 (each dword-aligned):
//   COMMON (16) -> NOTIFY (20) -> ISR (16) -> DEVICE (16, only with device config)
//   -> PCI_CFG (20) -> MSI-X (12) -> end
//
// Notify region length (§4.1.4.4.1 without NOTIFICATION_DATA): offset 2-aligned, multiplier an
// even power of two, length >= queue_notify_off * multiplier + 2 for every queue.
internal sealed class VirtioPciLayout
{
    internal const int VirtioBarIndex = 0;
    internal const int MsixBarIndex = 2;
    internal const ulong CommonConfigOffset = 0x0000;
    internal const ulong CommonConfigLength = VirtioPciCommonConfigRegisters.Size;
    internal const ulong IsrOffset = 0x1000;
    internal const ulong IsrLength = 1;
    internal const ulong DeviceConfigOffset = 0x2000;
    internal const int MaxDeviceConfigLength = 0x1000;
    internal const ulong NotifyOffset = 0x3000;
    internal const uint NotifyOffMultiplier = 4;
    internal const int FirstCapability = 0x40;
    private const ulong Page = 0x1000;

    internal VirtioPciLayout(int queueCount, int configSize, int vectorCount)
    {
        DeviceConfigLength = (ulong)configSize;
        NotifyLength = queueCount == 0 ? 2 : (ulong)queueCount * NotifyOffMultiplier;
        VirtioBarSize = BitOperations.RoundUpToPowerOf2(NotifyOffset + RoundUp(NotifyLength, Page));
        MsixTableLength = (ulong)vectorCount * MsixRegisters.EntrySize;
        MsixPbaOffset = RoundUp(MsixTableLength, Page);
        MsixPbaLength = (ulong)((vectorCount + 63) / 64 * 8);
        MsixBarSize = BitOperations.RoundUpToPowerOf2(MsixPbaOffset + Page);

        int next = FirstCapability;
        CommonCapability = Take(ref next, 16);
        NotifyCapability = Take(ref next, 20);
        IsrCapability = Take(ref next, 16);
        DeviceCapability = configSize > 0 ? Take(ref next, 16) : -1;
        PciConfigCapability = Take(ref next, 20);
        MsixCapability = Take(ref next, MsixRegisters.CapabilityLength);
    }

    internal ulong DeviceConfigLength { get; }

    internal ulong NotifyLength { get; }

    internal ulong VirtioBarSize { get; }

    internal ulong MsixTableLength { get; }

    internal ulong MsixPbaOffset { get; }

    internal ulong MsixPbaLength { get; }

    internal ulong MsixBarSize { get; }

    internal int CommonCapability { get; }

    internal int NotifyCapability { get; }

    internal int IsrCapability { get; }

    internal int DeviceCapability { get; }

    internal int PciConfigCapability { get; }

    internal int MsixCapability { get; }

    // pci_cfg_data: the dword the configuration access window reads and writes through.
    internal int PciConfigData => PciConfigCapability + VirtioPciCapabilityRegisters.PciConfigData;

    private static ulong RoundUp(ulong value, ulong multiple) => (value + multiple - 1) / multiple * multiple;

    private static int Take(ref int next, int length)
    {
        int offset = next;
        next = (next + length + 3) & ~3;
        return offset;
    }
}
