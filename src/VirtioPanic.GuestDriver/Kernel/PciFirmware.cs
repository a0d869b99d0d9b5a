using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.Transport.Pci;

namespace VirtioPanic.GuestDriver.Kernel;

// Firmware's PCI resource assignment and the kernel's bus scan, for bus 0:
//   for each device number whose vendor ID is not 0xFFFF (function 0 only; no bridges):
//     Command = 0 (decoding off while BARs move)
//     for each BAR: write all ones, read back; 0 = not implemented; I/O BARs are skipped (no
//     port space is routed); a 64-bit BAR also sizes its upper half; size = ~mask + 1; place it
//     naturally aligned in the memory window
//     Interrupt Line = the swizzled line of its pin (what ACPI _PRT would say)
//     Command = memory space | bus master
// (PCI Local Bus 3.0 §6.2.5.1; virtio-spec-notes §4.3.)
internal static class PciFirmware
{
    private const uint BarIoSpace = 0x1;
    private const uint BarTypeMask = 0x6;
    private const uint BarAddressMask = 0xFFFF_FFF0;

    internal static List<PciFunctionInfo> EnumerateAndAssign(PciConfigAccess config, PciHostBridgeLayout layout)
    {
        var found = new List<PciFunctionInfo>();
        ulong next = layout.MemoryWindowBase;
        ulong end = layout.MemoryWindowBase + layout.MemoryWindowSize;
        for (int device = 0; device < 32; device++)
        {
            ushort vendor = config.Read16(device, PciConfigRegisters.VendorId);
            if (vendor == 0xFFFF)
            {
                continue;
            }

            var info = new PciFunctionInfo(device, vendor, config.Read16(device, PciConfigRegisters.DeviceId));
            config.Write16(device, PciConfigRegisters.Command, 0);
            for (int bar = 0; bar < 6; bar++)
            {
                int register = PciConfigRegisters.Bar0 + (4 * bar);
                uint original = config.Read32(device, register);
                config.Write32(device, register, uint.MaxValue);
                uint low = config.Read32(device, register);
                if (low == 0 || (original & BarIoSpace) != 0)
                {
                    config.Write32(device, register, original);
                    continue;
                }

                bool is64 = (low & BarTypeMask) == PciConfigRegisters.BarMemoryType64;
                ulong mask = low & BarAddressMask;
                if (is64 && bar < 5)
                {
                    config.Write32(device, register + 4, uint.MaxValue);
                    mask |= (ulong)config.Read32(device, register + 4) << 32;
                }
                else
                {
                    mask |= 0xFFFF_FFFF_0000_0000;
                }

                ulong size = ~mask + 1;
                ulong address = (next + size - 1) & ~(size - 1);
                if (size == 0 || address + size > end || address + size < address)
                {
                    throw new InvalidOperationException($"{info}: BAR {bar} of {size} bytes does not fit the PCI memory window.");
                }

                config.Write32(device, register, (uint)address);
                if (is64)
                {
                    config.Write32(device, register + 4, (uint)(address >> 32));
                }

                info.BarAddress[bar] = address;
                info.BarSize[bar] = size;
                next = address + size;
                if (is64)
                {
                    bar++;
                }
            }

            int pin = config.Read8(device, PciConfigRegisters.InterruptPin);
            if (pin is >= 1 and <= 4)
            {
                info.InterruptPin = pin;
                info.InterruptLine = layout.IntxLine(device, pin);
                config.Write8(device, PciConfigRegisters.InterruptLine, (byte)info.InterruptLine);
            }

            config.Write16(device, PciConfigRegisters.Command, PciConfigRegisters.CommandMemorySpace | PciConfigRegisters.CommandBusMaster);
            found.Add(info);
        }

        return found;
    }
}
