using System.Buffers.Binary;
using System.Diagnostics;

namespace VirtioPanic.Transport.Pci;

// Configuration space accesses (PCI LB 3.0 §6.1–6.2). Accesses are 1, 2 or 4 bytes, naturally
// aligned, inside the 256 bytes; they are decoded one dword at a time. Most bytes are plain
// storage with a write mask (PciCapabilities); these dwords have side effects:
//
//   0x04       Command (memory decode -> BarChanged, bus master -> MSI-X, INTx disable -> line)
//              and Status (bit 3 live from the ISR, error bits RW1C)
//   0x10-0x1C  BAR0/1 (virtio) and BAR2/3 (MSI-X): 64-bit sizing protocol (PciBar)
//   0x20-0x24  BAR4/5, 0x28 CardBus CIS, 0x30 expansion ROM: not implemented, read 0, writes ignored
//   MSI-X cap  message control: enable and function mask (MsixTable)
//   PCI_CFG    pci_cfg_data: a read or write of cap.length bytes at cap.offset in BAR cap.bar
//              (virtio 1.2 §4.1.4.9.1 device MUST), with the same side effects as a direct access
public sealed partial class VirtioPciFunction
{
    // Status bits 8 and 11–15 are write-1-to-clear (error reporting; this function never sets them).
    private const uint StatusWriteOneToClear = 0xF900u << 16;

    /// <summary>A guest configuration-space read (the hypervisor's CF8/CFC or ECAM exit).</summary>
    /// <param name="offset">Byte offset, 0–255.</param>
    /// <param name="data">Destination; 1, 2 or 4 bytes, naturally aligned. Anything else reads zeros.</param>
    public void ReadConfig(uint offset, Span<byte> data)
    {
        InvalidAccessKind kind = CheckConfigAccess(offset, data.Length);
        if (kind != InvalidAccessKind.None)
        {
            data.Clear();
            _reporter.Invalid(kind, AccessRegion.PciConfigSpace, offset, data.Length, write: false);
            return;
        }

        int dword = (int)offset & ~3;
        if (dword == _layout.PciConfigData)
        {
            // The window reads the BAR first, then the bytes are returned from pci_cfg_data.
            WindowRead();
        }

        uint value;
        lock (_lock)
        {
            value = ReadDwordUnsynchronized(dword);
        }

        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        bytes.Slice((int)offset & 3, data.Length).CopyTo(data);
    }

    /// <summary>A guest configuration-space write.</summary>
    /// <param name="offset">Byte offset, 0–255.</param>
    /// <param name="data">The bytes written; 1, 2 or 4, naturally aligned. Anything else is dropped.</param>
    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        InvalidAccessKind kind = CheckConfigAccess(offset, data.Length);
        if (kind != InvalidAccessKind.None)
        {
            _reporter.Invalid(kind, AccessRegion.PciConfigSpace, offset, data.Length, write: true);
            return;
        }

        int dword = (int)offset & ~3;
        int shift = ((int)offset & 3) * 8;
        Span<byte> bytes = stackalloc byte[4];
        bytes.Clear();
        data.CopyTo(bytes[((int)offset & 3)..]);
        uint value = BinaryPrimitives.ReadUInt32LittleEndian(bytes);
        uint byteMask = (data.Length == 4 ? 0xFFFF_FFFFu : ((1u << (data.Length * 8)) - 1)) << shift;

        ConfigWriteEffects effects = default;
        lock (_lock)
        {
            WriteDwordUnsynchronized(dword, value, byteMask, ref effects);
        }

        ApplyEffects(in effects, offset, data.Length);
    }

    private static InvalidAccessKind CheckConfigAccess(uint offset, int width)
    {
        if (width is not (1 or 2 or 4))
        {
            return InvalidAccessKind.WrongWidth;
        }

        if (offset >= ConfigSpaceSize || offset + (uint)width > ConfigSpaceSize)
        {
            return InvalidAccessKind.OutOfRange;
        }

        return (offset & (uint)(width - 1)) != 0 ? InvalidAccessKind.Misaligned : InvalidAccessKind.None;
    }

    private uint ReadDwordUnsynchronized(int dword)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        uint value = BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(dword));
        switch (dword)
        {
            case PciConfigRegisters.Command:
                // §4.1.4.5.1: with MSI-X disabled the device MUST mirror the ISR into Status bit 3.
                return _router.InterruptStatus ? value | ((uint)PciConfigRegisters.StatusInterrupt << 16) : value;
            case PciConfigRegisters.Bar0:
                return _virtioBar.ReadLow();
            case PciConfigRegisters.Bar0 + 4:
                return _virtioBar.ReadHigh();
            case PciConfigRegisters.Bar0 + 8:
                return _msixBar.ReadLow();
            case PciConfigRegisters.Bar0 + 12:
                return _msixBar.ReadHigh();
            default:
                if (dword == _layout.MsixCapability)
                {
                    return (value & 0xFFFF) | ((uint)_msix.MessageControl << 16);
                }

                return value;
        }
    }

    private void WriteDwordUnsynchronized(int dword, uint value, uint byteMask, ref ConfigWriteEffects effects)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        switch (dword)
        {
            case PciConfigRegisters.Command:
                WriteCommandStatusUnsynchronized(value, byteMask, ref effects);
                return;
            case PciConfigRegisters.Bar0:
            case PciConfigRegisters.Bar0 + 4:
            case PciConfigRegisters.Bar0 + 8:
            case PciConfigRegisters.Bar0 + 12:
                WriteBarRegisterUnsynchronized(dword, value, byteMask);
                effects.BarsMayHaveMoved = true;
                return;
            case PciConfigRegisters.Bar0 + 16:
            case PciConfigRegisters.Bar0 + 20:
            case PciConfigRegisters.Bar0 + 24:   // CardBus CIS
            case PciConfigRegisters.ExpansionRom:
                // Unimplemented BARs and ROM: firmware sizes them too; reading 0 back says "absent".
                return;
        }

        if (dword == _layout.MsixCapability)
        {
            if ((byteMask & 0xFFFF_0000u) != 0)
            {
                uint control = ((uint)_msix.MessageControl << 16 & ~byteMask) | (value & byteMask);
                effects.MessageControl = (ushort)(control >> 16);
                effects.MessageControlWritten = true;
            }

            if ((byteMask & 0xFFFF) != 0 && (byteMask & 0xFFFF_0000u) == 0)
            {
                effects.ReadOnlyWrite = true;   // capability ID and next pointer only
            }

            return;
        }

        uint writable = BinaryPrimitives.ReadUInt32LittleEndian(_writeMask.AsSpan(dword)) & byteMask;
        if (writable == 0)
        {
            effects.ReadOnlyWrite = true;
            return;
        }

        uint current = BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(dword));
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(dword), (current & ~writable) | (value & writable));
        if (dword == _layout.PciConfigData)
        {
            effects.WindowWrite = true;
        }
    }

    private void WriteCommandStatusUnsynchronized(uint value, uint byteMask, ref ConfigWriteEffects effects)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        uint current = BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(PciConfigRegisters.Command));
        uint writable = BinaryPrimitives.ReadUInt32LittleEndian(_writeMask.AsSpan(PciConfigRegisters.Command)) & byteMask;
        uint next = (current & ~writable) | (value & writable);
        next &= ~(value & StatusWriteOneToClear & byteMask);
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(PciConfigRegisters.Command), next);

        ushort before = (ushort)current;
        ushort after = (ushort)next;
        effects.CommandChanged = before != after;
        effects.Command = after;
        _memoryEnabled = (after & PciConfigRegisters.CommandMemorySpace) != 0;
    }

    private void WriteBarRegisterUnsynchronized(int dword, uint value, uint byteMask)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        uint merged = (ReadDwordUnsynchronized(dword) & ~byteMask) | (value & byteMask);
        switch (dword)
        {
            case PciConfigRegisters.Bar0:
                _virtioBar.WriteLow(merged);
                break;
            case PciConfigRegisters.Bar0 + 4:
                _virtioBar.WriteHigh(merged);
                break;
            case PciConfigRegisters.Bar0 + 8:
                _msixBar.WriteLow(merged);
                break;
            default:
                _msixBar.WriteHigh(merged);
                break;
        }
    }

    // Side effects of a configuration write, run with no lock held.
    private void ApplyEffects(in ConfigWriteEffects effects, uint offset, int width)
    {
        if (effects.ReadOnlyWrite)
        {
            _reporter.Invalid(InvalidAccessKind.ReadOnly, AccessRegion.PciConfigSpace, offset, width, write: true);
        }

        if (effects.MessageControlWritten)
        {
            _msix.WriteMessageControl(effects.MessageControl);   // delivers what became unmasked
            _router.UpdateLine();                                // MSI-X enable gates INTx
        }

        if (effects.CommandChanged)
        {
            _router.SetIntxDisabled((effects.Command & PciConfigRegisters.CommandInterruptDisable) != 0);
            _msix.SetBusMaster((effects.Command & PciConfigRegisters.CommandBusMaster) != 0);
        }

        if (effects.CommandChanged || effects.BarsMayHaveMoved)
        {
            PublishBarChanges();
        }

        if (effects.WindowWrite)
        {
            WindowWrite();
        }
    }

    // pci_cfg_data read: perform the BAR read the window describes and latch the bytes.
    private void WindowRead()
    {
        Span<byte> buffer = stackalloc byte[4];
        buffer.Clear();
        if (TryGetWindow(write: false, out int bar, out uint windowOffset, out int length))
        {
            ReadBar(bar, windowOffset, buffer[..length]);
        }

        lock (_lock)
        {
            buffer.CopyTo(_config.AsSpan(_layout.PciConfigData));
        }
    }

    // pci_cfg_data written: perform the BAR write with the first cap.length bytes.
    private void WindowWrite()
    {
        Span<byte> buffer = stackalloc byte[4];
        if (!TryGetWindow(write: true, out int bar, out uint windowOffset, out int length))
        {
            return;
        }

        lock (_lock)
        {
            _config.AsSpan(_layout.PciConfigData, 4).CopyTo(buffer);
        }

        WriteBar(bar, windowOffset, buffer[..length]);
    }

    // §4.1.4.9: cap.bar names a BAR, cap.length is 1, 2 or 4, and the range lies inside the BAR.
    private bool TryGetWindow(bool write, out int bar, out uint windowOffset, out int length)
    {
        int capability = _layout.PciConfigCapability;
        uint rawLength;
        lock (_lock)
        {
            bar = _config[capability + VirtioPciCapabilityRegisters.Bar];
            windowOffset = BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(capability + VirtioPciCapabilityRegisters.Offset));
            rawLength = BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(capability + VirtioPciCapabilityRegisters.Length));
        }

        length = (int)Math.Min(rawLength, 8);
        ulong barSize = bar switch
        {
            VirtioPciLayout.VirtioBarIndex => _virtioBar.Size,
            VirtioPciLayout.MsixBarIndex => _msixBar.Size,
            _ => 0,
        };
        if (rawLength is 1 or 2 or 4 && (ulong)windowOffset + rawLength <= barSize)
        {
            return true;
        }

        if (rawLength == 0)
        {
            return false;   // never set up (a full configuration dump reads here): nothing to do, nothing wrong
        }

        _reporter.Invalid(barSize == 0 || rawLength is 1 or 2 or 4 ? InvalidAccessKind.OutOfRange : InvalidAccessKind.WrongWidth,
            AccessRegion.PciConfigWindow, windowOffset, (int)Math.Min(rawLength, int.MaxValue), write);
        return false;
    }

    private struct ConfigWriteEffects
    {
        public bool ReadOnlyWrite;
        public bool CommandChanged;
        public ushort Command;
        public bool BarsMayHaveMoved;
        public bool MessageControlWritten;
        public ushort MessageControl;
        public bool WindowWrite;
    }
}
