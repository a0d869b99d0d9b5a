using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace VirtioPanic.Virtio.Memory;

/// <summary>
/// A guest-physical address space: non-overlapping <see cref="GuestMemoryRegion"/>s, fixed at
/// construction. Every access takes an untrusted guest address and reports a
/// <see cref="GuestMemoryStatus"/> (or <c>false</c>) instead of throwing: ranges are checked for
/// 64-bit overflow, for leaving guest memory, and for straddling two regions.
/// </summary>
/// <remarks>
/// Thread-safe: the region table never changes after construction. Disposing the address space
/// disposes its regions; stop every device using it first.
/// </remarks>
public sealed class GuestMemory : IDisposable
{
    private readonly GuestMemoryRegion[] _regions;   // sorted by guest address, non-overlapping
    private readonly bool _ownsRegions;

    // The first region, flattened into this object so the common translation is one dependent
    // load away instead of three (object -> array -> region -> fields).
    private readonly ulong _firstGuest;
    private readonly ulong _firstSize;
    private readonly nint _firstHost;

    /// <summary>Creates an address space over <paramref name="regions"/>, which it then owns.</summary>
    /// <param name="regions">Non-overlapping regions, in any order.</param>
    /// <exception cref="ArgumentException">No regions, or two of them overlap.</exception>
    public GuestMemory(params IEnumerable<GuestMemoryRegion> regions)
        : this(regions, ownsRegions: true)
    {
    }

    /// <summary>Creates an address space over <paramref name="regions"/>.</summary>
    /// <param name="regions">Non-overlapping regions, in any order.</param>
    /// <param name="ownsRegions">Whether <see cref="Dispose"/> disposes the regions.</param>
    /// <exception cref="ArgumentException">No regions, or two of them overlap.</exception>
    public GuestMemory(IEnumerable<GuestMemoryRegion> regions, bool ownsRegions)
    {
        ArgumentNullException.ThrowIfNull(regions);
        GuestMemoryRegion[] sorted = [.. regions];
        if (sorted.Length == 0)
        {
            throw new ArgumentException("Guest memory needs at least one region.", nameof(regions));
        }

        Array.Sort(sorted, static (a, b) => a.GuestAddress.CompareTo(b.GuestAddress));
        for (int i = 1; i < sorted.Length; i++)
        {
            if (sorted[i].GuestAddress < sorted[i - 1].EndAddress)
            {
                throw new ArgumentException($"Regions at 0x{sorted[i - 1].GuestAddress:x} and 0x{sorted[i].GuestAddress:x} overlap.", nameof(regions));
            }
        }

        _regions = sorted;
        _ownsRegions = ownsRegions;
        _firstGuest = sorted[0].GuestAddress;
        _firstSize = sorted[0].Size;
        _firstHost = sorted[0].HostAddress;
    }

    /// <summary>The regions, sorted by guest address.</summary>
    public IReadOnlyList<GuestMemoryRegion> Regions => _regions;

    /// <summary>Allocates a guarded anonymous address space of one region (convenient for tests and demos).</summary>
    /// <param name="size">Size in bytes.</param>
    /// <param name="guestAddress">Guest-physical base of the single region.</param>
    public static GuestMemory CreateAnonymous(ulong size, ulong guestAddress = 0) =>
        new(GuestMemoryRegion.AllocateAnonymous(guestAddress, size));

    /// <summary>
    /// Translates [<paramref name="address"/>, +<paramref name="length"/>) into a validated slice.
    /// A zero length is valid anywhere inside a region (or at its end).
    /// </summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="length">Untrusted length in bytes; at most 2^32 - 1.</param>
    /// <param name="slice">The slice when the result is <see cref="GuestMemoryStatus.Ok"/>; otherwise empty.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public GuestMemoryStatus TryGetSlice(ulong address, ulong length, out GuestMemorySlice slice)
    {
        // Fast path: the first region holds the range (the common single-region VM). One unsigned
        // compare rejects addresses below the base, whose offset wraps to a huge value.
        ulong offset = address - _firstGuest;
        if (offset < _firstSize && length <= _firstSize - offset && length <= uint.MaxValue)
        {
            slice = new GuestMemorySlice(_firstHost + (nint)offset, address, (uint)length);
            return GuestMemoryStatus.Ok;
        }

        return TryGetSliceSlow(address, length, out slice);
    }

    /// <summary>Checks a range without producing a slice.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="length">Untrusted length in bytes.</param>
    public GuestMemoryStatus CheckRange(ulong address, ulong length) => TryGetSlice(address, length, out _);

    /// <summary>Copies guest memory into <paramref name="destination"/>.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="destination">Receives <c>destination.Length</c> bytes.</param>
    /// <returns>Whether the whole range was readable; nothing is copied otherwise.</returns>
    public bool TryRead(ulong address, Span<byte> destination)
    {
        if (TryGetSlice(address, (ulong)destination.Length, out GuestMemorySlice slice) != GuestMemoryStatus.Ok)
        {
            return false;
        }

        slice.Span.CopyTo(destination);
        return true;
    }

    /// <summary>Copies <paramref name="source"/> into guest memory.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="source">Bytes to write.</param>
    /// <returns>Whether the whole range was writable; nothing is written otherwise.</returns>
    public bool TryWrite(ulong address, ReadOnlySpan<byte> source)
    {
        if (TryGetSlice(address, (ulong)source.Length, out GuestMemorySlice slice) != GuestMemoryStatus.Ok)
        {
            return false;
        }

        source.CopyTo(slice.Span);
        return true;
    }

    /// <summary>Reads a little-endian 16-bit value.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="value">The value, or 0 on failure.</param>
    public bool TryReadUInt16(ulong address, out ushort value)
    {
        Span<byte> buffer = stackalloc byte[sizeof(ushort)];
        bool ok = TryRead(address, buffer);
        value = ok ? BinaryPrimitives.ReadUInt16LittleEndian(buffer) : (ushort)0;
        return ok;
    }

    /// <summary>Reads a little-endian 32-bit value.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="value">The value, or 0 on failure.</param>
    public bool TryReadUInt32(ulong address, out uint value)
    {
        Span<byte> buffer = stackalloc byte[sizeof(uint)];
        bool ok = TryRead(address, buffer);
        value = ok ? BinaryPrimitives.ReadUInt32LittleEndian(buffer) : 0;
        return ok;
    }

    /// <summary>Reads a little-endian 64-bit value.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="value">The value, or 0 on failure.</param>
    public bool TryReadUInt64(ulong address, out ulong value)
    {
        Span<byte> buffer = stackalloc byte[sizeof(ulong)];
        bool ok = TryRead(address, buffer);
        value = ok ? BinaryPrimitives.ReadUInt64LittleEndian(buffer) : 0;
        return ok;
    }

    /// <summary>Writes a little-endian 16-bit value.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="value">The value.</param>
    public bool TryWriteUInt16(ulong address, ushort value)
    {
        Span<byte> buffer = stackalloc byte[sizeof(ushort)];
        BinaryPrimitives.WriteUInt16LittleEndian(buffer, value);
        return TryWrite(address, buffer);
    }

    /// <summary>Writes a little-endian 32-bit value.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="value">The value.</param>
    public bool TryWriteUInt32(ulong address, uint value)
    {
        Span<byte> buffer = stackalloc byte[sizeof(uint)];
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, value);
        return TryWrite(address, buffer);
    }

    /// <summary>Writes a little-endian 64-bit value.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="value">The value.</param>
    public bool TryWriteUInt64(ulong address, ulong value)
    {
        Span<byte> buffer = stackalloc byte[sizeof(ulong)];
        BinaryPrimitives.WriteUInt64LittleEndian(buffer, value);
        return TryWrite(address, buffer);
    }

    /// <summary>Loads a 16-bit ring index with acquire semantics; the address must be 2-byte aligned.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="value">The value, or 0 on failure.</param>
    public GuestMemoryStatus TryLoadUInt16Acquire(ulong address, out ushort value)
    {
        value = 0;
        if ((address & 1) != 0)
        {
            return GuestMemoryStatus.Misaligned;
        }

        GuestMemoryStatus status = TryGetSlice(address, sizeof(ushort), out GuestMemorySlice slice);
        if (status == GuestMemoryStatus.Ok)
        {
            value = slice.LoadUInt16Acquire(0);
        }

        return status;
    }

    /// <summary>Stores a 16-bit ring index with release semantics; the address must be 2-byte aligned.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="value">The value.</param>
    public GuestMemoryStatus TryStoreUInt16Release(ulong address, ushort value)
    {
        if ((address & 1) != 0)
        {
            return GuestMemoryStatus.Misaligned;
        }

        GuestMemoryStatus status = TryGetSlice(address, sizeof(ushort), out GuestMemorySlice slice);
        if (status == GuestMemoryStatus.Ok)
        {
            slice.StoreUInt16Release(0, value);
        }

        return status;
    }

    /// <summary>Loads a 32-bit value with acquire semantics (<see cref="GuestMemorySlice.LoadUInt32Acquire"/>); the address must be 4-byte aligned.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="value">The value, or 0 on failure.</param>
    public GuestMemoryStatus TryLoadUInt32Acquire(ulong address, out uint value)
    {
        value = 0;
        if ((address & 3) != 0)
        {
            return GuestMemoryStatus.Misaligned;
        }

        GuestMemoryStatus status = TryGetSlice(address, sizeof(uint), out GuestMemorySlice slice);
        if (status == GuestMemoryStatus.Ok)
        {
            value = slice.LoadUInt32Acquire(0);
        }

        return status;
    }

    /// <summary>Stores a 32-bit value with release semantics (<see cref="GuestMemorySlice.StoreUInt32Release"/>); the address must be 4-byte aligned.</summary>
    /// <param name="address">Untrusted guest-physical address.</param>
    /// <param name="value">The value.</param>
    public GuestMemoryStatus TryStoreUInt32Release(ulong address, uint value)
    {
        if ((address & 3) != 0)
        {
            return GuestMemoryStatus.Misaligned;
        }

        GuestMemoryStatus status = TryGetSlice(address, sizeof(uint), out GuestMemorySlice slice);
        if (status == GuestMemoryStatus.Ok)
        {
            slice.StoreUInt32Release(0, value);
        }

        return status;
    }

    /// <summary>Disposes the regions when this address space owns them.</summary>
    public void Dispose()
    {
        if (!_ownsRegions)
        {
            return;
        }

        foreach (GuestMemoryRegion region in _regions)
        {
            region.Dispose();
        }
    }

    private GuestMemoryStatus TryGetSliceSlow(ulong address, ulong length, out GuestMemorySlice slice)
    {
        slice = default;
        if (address + length < address)
        {
            return GuestMemoryStatus.AddressOverflow;
        }

        if (length > uint.MaxValue)
        {
            return GuestMemoryStatus.TooLong;
        }

        // Binary search for the last region whose base is <= address.
        int lo = 0;
        int hi = _regions.Length - 1;
        int found = -1;
        while (lo <= hi)
        {
            int mid = (int)((uint)(lo + hi) >> 1);
            if (_regions[mid].GuestAddress <= address)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        if (found < 0)
        {
            return GuestMemoryStatus.OutOfRange;
        }

        GuestMemoryRegion region = _regions[found];
        ulong offset = address - region.GuestAddress;
        if (offset > region.Size || (offset == region.Size && length != 0))
        {
            return GuestMemoryStatus.OutOfRange;
        }

        if (length > region.Size - offset)
        {
            // The range starts inside this region but runs past its end: into a hole, into the
            // next region, or off the end of guest memory.
            ulong last = address + length - 1;
            for (int i = found + 1; i < _regions.Length && _regions[i].GuestAddress <= last; i++)
            {
                if (_regions[i].Contains(last, 1))
                {
                    return GuestMemoryStatus.CrossesRegionBoundary;
                }
            }

            return GuestMemoryStatus.OutOfRange;
        }

        slice = new GuestMemorySlice(region.HostAddress + (nint)offset, address, (uint)length);
        return GuestMemoryStatus.Ok;
    }
}
