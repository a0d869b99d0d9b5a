using System.Buffers.Binary;

namespace VirtioPanic.Transport.Pci;

// Builds the power-on configuration space of a virtio-pci function and its write mask (which
// bits a plain configuration write may change). Registers with side effects (BARs, Command, the
// Status RW1C bits, MSI-X message control, pci_cfg_data) are handled by VirtioPciFunction; their
// mask bits here describe only what is stored.
//
// Identification (virtio 1.2 §4.1.2.1): vendor 0x1AF4 (MUST), device 0x1040 + virtio device ID
// (MUST), revision >= 1 and subsystem ID >= 0x40 (SHOULD). Status bit 4 announces the capability
// list; capabilities are described in VirtioPciLayout (§4.1.4: cap_len covers every field,
// device MUST; common, notify, ISR and PCI_CFG capabilities present, §4.1.4.3.1, §4.1.4.4.1,
// §4.1.4.5.1, §4.1.4.9.1; device configuration capability when the type has one, §4.1.4.6).
internal static class PciCapabilities
{
    internal const ushort VirtioVendorId = 0x1AF4;
    internal const ushort VirtioDeviceIdBase = 0x1040;

    internal static void Build(Span<byte> config, Span<byte> writeMask, VirtioPciLayout layout, ushort deviceId, VirtioPciFunctionOptions options, int vectorCount)
    {
        config.Clear();
        writeMask.Clear();

        // Header.
        Write16(config, PciConfigRegisters.VendorId, VirtioVendorId);
        Write16(config, PciConfigRegisters.DeviceId, deviceId);
        Write16(writeMask, PciConfigRegisters.Command, PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster | PciConfigRegisters.CommandInterruptDisable);
        Write16(config, PciConfigRegisters.Status, PciConfigRegisters.StatusCapabilityList);
        config[PciConfigRegisters.RevisionId] = options.RevisionId;
        config[PciConfigRegisters.ProgrammingInterface] = (byte)options.ClassCode;
        config[PciConfigRegisters.SubClass] = (byte)(options.ClassCode >> 8);
        config[PciConfigRegisters.BaseClass] = (byte)(options.ClassCode >> 16);
        writeMask[PciConfigRegisters.CacheLineSize] = 0xFF;
        Write16(config, PciConfigRegisters.SubsystemVendorId, options.SubsystemVendorId);
        Write16(config, PciConfigRegisters.SubsystemId, options.SubsystemId);
        config[PciConfigRegisters.CapabilitiesPointer] = (byte)layout.CommonCapability;
        writeMask[PciConfigRegisters.InterruptLine] = 0xFF;
        config[PciConfigRegisters.InterruptPin] = 1;   // INTA#

        // Virtio structures, all in the virtio BAR.
        VirtioCap(config, layout.CommonCapability, layout.NotifyCapability, 16, VirtioPciCapabilityRegisters.TypeCommonConfig,
            VirtioPciLayout.CommonConfigOffset, VirtioPciLayout.CommonConfigLength);
        VirtioCap(config, layout.NotifyCapability, layout.IsrCapability, 20, VirtioPciCapabilityRegisters.TypeNotifyConfig,
            VirtioPciLayout.NotifyOffset, layout.NotifyLength);
        Write32(config, layout.NotifyCapability + VirtioPciCapabilityRegisters.NotifyOffMultiplier, VirtioPciLayout.NotifyOffMultiplier);
        int afterIsr = layout.DeviceCapability >= 0 ? layout.DeviceCapability : layout.PciConfigCapability;
        VirtioCap(config, layout.IsrCapability, afterIsr, 16, VirtioPciCapabilityRegisters.TypeIsrConfig,
            VirtioPciLayout.IsrOffset, VirtioPciLayout.IsrLength);
        if (layout.DeviceCapability >= 0)
        {
            VirtioCap(config, layout.DeviceCapability, layout.PciConfigCapability, 16, VirtioPciCapabilityRegisters.TypeDeviceConfig,
                VirtioPciLayout.DeviceConfigOffset, layout.DeviceConfigLength);
        }

        // PCI_CFG (§4.1.4.9): bar, offset, length and pci_cfg_data are written by the driver.
        int window = layout.PciConfigCapability;
        config[window + PciConfigRegisters.CapabilityId] = PciConfigRegisters.CapabilityIdVendorSpecific;
        config[window + PciConfigRegisters.CapabilityNext] = (byte)layout.MsixCapability;
        config[window + VirtioPciCapabilityRegisters.CapLength] = 20;
        config[window + VirtioPciCapabilityRegisters.ConfigType] = VirtioPciCapabilityRegisters.TypePciConfig;
        writeMask[window + VirtioPciCapabilityRegisters.Bar] = 0xFF;
        writeMask.Slice(window + VirtioPciCapabilityRegisters.Offset, 12).Fill(0xFF);

        // MSI-X: table and PBA in the MSI-X BAR; message control is kept by MsixTable.
        int msix = layout.MsixCapability;
        config[msix + PciConfigRegisters.CapabilityId] = PciConfigRegisters.CapabilityIdMsix;
        config[msix + PciConfigRegisters.CapabilityNext] = 0;
        Write16(config, msix + MsixRegisters.MessageControl, (ushort)(vectorCount - 1));
        Write32(config, msix + MsixRegisters.TableOffset, VirtioPciLayout.MsixBarIndex);
        Write32(config, msix + MsixRegisters.PbaOffset, (uint)layout.MsixPbaOffset | VirtioPciLayout.MsixBarIndex);
    }

    private static void VirtioCap(Span<byte> config, int at, int next, byte length, byte type, ulong offset, ulong size)
    {
        config[at + PciConfigRegisters.CapabilityId] = PciConfigRegisters.CapabilityIdVendorSpecific;
        config[at + PciConfigRegisters.CapabilityNext] = (byte)next;
        config[at + VirtioPciCapabilityRegisters.CapLength] = length;
        config[at + VirtioPciCapabilityRegisters.ConfigType] = type;
        config[at + VirtioPciCapabilityRegisters.Bar] = VirtioPciLayout.VirtioBarIndex;
        Write32(config, at + VirtioPciCapabilityRegisters.Offset, (uint)offset);
        Write32(config, at + VirtioPciCapabilityRegisters.Length, (uint)size);
    }

    private static void Write16(Span<byte> config, int offset, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(config[offset..], value);

    private static void Write32(Span<byte> config, int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(config[offset..], value);
}
