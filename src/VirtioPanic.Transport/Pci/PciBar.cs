namespace VirtioPanic.Transport.Pci;

// One 64-bit memory BAR: a naturally aligned power-of-two window (PCI LB 3.0 §6.2.5.1).
//
// BAR n holds address bits 31:4 plus the type bits (64-bit, non-prefetchable); BAR n+1 holds bits
// 63:32. Address bits below the size read as 0, which is the whole sizing protocol: after
// software writes all ones, it reads back ~(size - 1) and computes the size. The halves are
// written independently (firmware writes low then high, or the reverse).
//
// The address is written under the function's lock and read lock-free by MMIO dispatch.
internal sealed class PciBar
{
    private ulong _address;

    internal PciBar(int index, ulong size)
    {
        Index = index;
        Size = size;
    }

    internal int Index { get; }

    internal ulong Size { get; }

    internal ulong Address => Volatile.Read(ref _address);

    internal uint ReadLow() => ((uint)Address & 0xFFFF_FFF0u) | PciConfigRegisters.BarMemoryType64;

    internal uint ReadHigh() => (uint)(Address >> 32);

    internal void WriteLow(uint value) => Set((Address & 0xFFFF_FFFF_0000_0000UL) | (value & 0xFFFF_FFF0u));

    internal void WriteHigh(uint value) => Set(((ulong)value << 32) | (Address & 0xFFFF_FFFFUL));

    internal void Set(ulong address) => Volatile.Write(ref _address, address & ~(Size - 1));

    internal bool IsAligned(ulong address) => (address & (Size - 1)) == 0;
}
