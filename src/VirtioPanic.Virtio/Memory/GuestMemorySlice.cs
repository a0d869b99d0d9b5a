using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace VirtioPanic.Virtio.Memory;

/// <summary>
/// A validated, contiguous range of guest memory and the host address it lives at. Obtained only
/// from <see cref="GuestMemory.TryGetSlice"/> (or by narrowing another slice), so its bounds were
/// checked once; every accessor re-checks the offset against the slice length with a single
/// unsigned compare, never against guest memory again.
/// </summary>
/// <remarks>
/// All multi-byte accessors are little-endian, as virtio 1.x requires for rings and configuration
/// (virtio 1.2 §1.4 "Structure Specifications"). A slice is only valid while the
/// <see cref="GuestMemory"/> it came from is alive.
/// </remarks>
public readonly struct GuestMemorySlice
{
    private readonly nint _host;
    private readonly uint _length;

    internal GuestMemorySlice(nint host, ulong guestAddress, uint length)
    {
        _host = host;
        GuestAddress = guestAddress;
        _length = length;
    }

    // The host address of the first byte, for the views Memory/ builds from validated slices
    // (SplitRingView); pointers never leave Memory/.
    internal nint HostAddress => _host;

    /// <summary>The guest-physical address of the first byte.</summary>
    public ulong GuestAddress { get; }

    /// <summary>Length in bytes.</summary>
    public uint Length => _length;

    /// <summary>Whether the slice is empty (the default value is empty).</summary>
    public bool IsEmpty => _length == 0;

    /// <summary>
    /// The bytes as a span. Guest memory is shared with a running guest: treat what you read as
    /// untrusted and possibly changing, copy before validating.
    /// </summary>
    /// <exception cref="InvalidOperationException">The slice is longer than a span can be (2 GiB); use <see cref="Slice"/> or <see cref="TryGetSpan"/>.</exception>
    public Span<byte> Span
    {
        get
        {
            if (_length > int.MaxValue)
            {
                ThrowHelper.ThrowSliceTooLongForSpan();
            }

            return CreateSpan(_host, (int)_length);
        }
    }

    /// <summary>
    /// The bytes as a span when the slice fits in one (at most 2 GiB - 1 bytes); the non-throwing
    /// form of <see cref="Span"/> for slices whose length came from the guest. A descriptor may
    /// legally describe up to 2^32 - 1 bytes: narrow it with <see cref="Slice"/> first, or refuse it.
    /// </summary>
    /// <param name="span">The bytes, or an empty span when the slice is too long.</param>
    /// <returns>False (and an empty span) when the slice is longer than a span can be.</returns>
    public bool TryGetSpan(out Span<byte> span)
    {
        if (_length > int.MaxValue)
        {
            span = default;
            return false;
        }

        span = CreateSpan(_host, (int)_length);
        return true;
    }

    /// <summary>A narrower slice; <paramref name="offset"/> and <paramref name="length"/> must lie inside this one.</summary>
    /// <param name="offset">Offset of the new slice in this one.</param>
    /// <param name="length">Length of the new slice.</param>
    public GuestMemorySlice Slice(uint offset, uint length)
    {
        if ((ulong)offset + length > _length)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(length));
        }

        return new GuestMemorySlice(_host + (nint)offset, GuestAddress + offset, length);
    }

    /// <summary>Reads a 16-bit little-endian ring index with acquire semantics (one atomic load).</summary>
    /// <param name="offset">Byte offset; the guest address must be 2-byte aligned.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort LoadUInt16Acquire(uint offset)
    {
        CheckRange(offset, sizeof(ushort));
        Debug.Assert(((GuestAddress + offset) & 1) == 0, "ring index must be aligned");
        ushort raw = Volatile.Read(ref RefAt<ushort>(_host, offset));
        return BitConverter.IsLittleEndian ? raw : BinaryPrimitives.ReverseEndianness(raw);
    }

    /// <summary>Writes a 16-bit little-endian ring index with release semantics (one atomic store).</summary>
    /// <param name="offset">Byte offset; the guest address must be 2-byte aligned.</param>
    /// <param name="value">The value to publish.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void StoreUInt16Release(uint offset, ushort value)
    {
        CheckRange(offset, sizeof(ushort));
        Debug.Assert(((GuestAddress + offset) & 1) == 0, "ring index must be aligned");
        Volatile.Write(ref RefAt<ushort>(_host, offset), BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value));
    }

    /// <summary>
    /// Reads a 32-bit little-endian value with acquire semantics: no load or store after it is
    /// performed before it. Pairs with a driver's release store (or write barrier, then store) of a
    /// flag written after the data it guards, such as an event record's <c>state</c>. One atomic
    /// load when the guest address is 4-byte aligned; otherwise (guest-chosen addresses may be odd)
    /// a plain load followed by a full fence, which keeps the ordering but is not a single access.
    /// </summary>
    /// <param name="offset">Byte offset.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint LoadUInt32Acquire(uint offset)
    {
        CheckRange(offset, sizeof(uint));
        uint raw;
        if (((GuestAddress + offset) & 3) == 0)
        {
            raw = Volatile.Read(ref RefAt<uint>(_host, offset));
        }
        else
        {
            raw = ReadUnaligned<uint>(_host, offset);

            // Acquire by fence: later loads (the data the value guards) stay after this one.
            Interlocked.MemoryBarrier();
        }

        return BitConverter.IsLittleEndian ? raw : BinaryPrimitives.ReverseEndianness(raw);
    }

    /// <summary>
    /// Writes a 32-bit little-endian value with release semantics: every load and store before it
    /// is visible before it. One atomic store when the guest address is 4-byte aligned; otherwise a
    /// full fence, then a plain store.
    /// </summary>
    /// <param name="offset">Byte offset.</param>
    /// <param name="value">The value to publish.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void StoreUInt32Release(uint offset, uint value)
    {
        CheckRange(offset, sizeof(uint));
        uint raw = BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value);
        if (((GuestAddress + offset) & 3) == 0)
        {
            Volatile.Write(ref RefAt<uint>(_host, offset), raw);
        }
        else
        {
            // Release by fence: the data written before stays before this store.
            Interlocked.MemoryBarrier();
            WriteUnaligned(_host, offset, raw);
        }
    }

    /// <summary>Reads a little-endian 16-bit value (plain load).</summary>
    /// <param name="offset">Byte offset.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort ReadUInt16(uint offset)
    {
        CheckRange(offset, sizeof(ushort));
        ushort raw = ReadUnaligned<ushort>(_host, offset);
        return BitConverter.IsLittleEndian ? raw : BinaryPrimitives.ReverseEndianness(raw);
    }

    /// <summary>Reads a little-endian 32-bit value (plain load).</summary>
    /// <param name="offset">Byte offset.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint ReadUInt32(uint offset)
    {
        CheckRange(offset, sizeof(uint));
        uint raw = ReadUnaligned<uint>(_host, offset);
        return BitConverter.IsLittleEndian ? raw : BinaryPrimitives.ReverseEndianness(raw);
    }

    /// <summary>Reads a little-endian 64-bit value (plain load).</summary>
    /// <param name="offset">Byte offset.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong ReadUInt64(uint offset)
    {
        CheckRange(offset, sizeof(ulong));
        ulong raw = ReadUnaligned<ulong>(_host, offset);
        return BitConverter.IsLittleEndian ? raw : BinaryPrimitives.ReverseEndianness(raw);
    }

    /// <summary>Writes a little-endian 16-bit value (plain store).</summary>
    /// <param name="offset">Byte offset.</param>
    /// <param name="value">The value.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WriteUInt16(uint offset, ushort value)
    {
        CheckRange(offset, sizeof(ushort));
        WriteUnaligned(_host, offset, BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value));
    }

    /// <summary>Writes a little-endian 32-bit value (plain store).</summary>
    /// <param name="offset">Byte offset.</param>
    /// <param name="value">The value.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WriteUInt32(uint offset, uint value)
    {
        CheckRange(offset, sizeof(uint));
        WriteUnaligned(_host, offset, BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value));
    }

    /// <summary>Writes a little-endian 64-bit value (plain store).</summary>
    /// <param name="offset">Byte offset.</param>
    /// <param name="value">The value.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WriteUInt64(uint offset, ulong value)
    {
        CheckRange(offset, sizeof(ulong));
        WriteUnaligned(_host, offset, BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value));
    }

    /// <summary>
    /// Copies a fixed-layout structure out of guest memory in one go. The copy is what callers
    /// validate and use: the guest can rewrite the source at any time (no double fetch).
    /// </summary>
    /// <typeparam name="T">A blittable wire structure whose fields are stored little-endian.</typeparam>
    /// <param name="offset">Byte offset.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public T Read<T>(uint offset)
        where T : unmanaged
    {
        CheckRange(offset, (uint)Unsafe.SizeOf<T>());
        return ReadUnaligned<T>(_host, offset);
    }

    /// <summary>Copies a fixed-layout structure into guest memory.</summary>
    /// <typeparam name="T">A blittable wire structure whose fields are stored little-endian.</typeparam>
    /// <param name="offset">Byte offset.</param>
    /// <param name="value">The structure.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write<T>(uint offset, in T value)
        where T : unmanaged
    {
        CheckRange(offset, (uint)Unsafe.SizeOf<T>());
        WriteUnaligned(_host, offset, value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CheckRange(uint offset, uint size)
    {
        // One compare in 64-bit arithmetic: offset + size cannot overflow there.
        if ((ulong)offset + size > _length)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(offset));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Span<byte> CreateSpan(nint host, int length)
    {
        // SAFETY: a slice is built only from a range GuestMemory validated against a live region
        // (or narrowed from such a slice with a checked offset), and length <= int.MaxValue here.
        return new Span<byte>((void*)host, length);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe ref T RefAt<T>(nint host, uint offset)
        where T : unmanaged
    {
        // SAFETY: callers checked offset + sizeof(T) <= length; the guest address is naturally
        // aligned (ring areas are validated 2/4/16-aligned at activation) and regions keep host and
        // guest addresses congruent mod 16, so the host address is aligned too.
        return ref Unsafe.AsRef<T>((void*)(host + (nint)offset));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe T ReadUnaligned<T>(nint host, uint offset)
        where T : unmanaged
    {
        // SAFETY: callers checked offset + sizeof(T) <= length of a validated slice.
        return Unsafe.ReadUnaligned<T>((void*)(host + (nint)offset));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void WriteUnaligned<T>(nint host, uint offset, T value)
        where T : unmanaged
    {
        // SAFETY: callers checked offset + sizeof(T) <= length of a validated slice.
        Unsafe.WriteUnaligned((void*)(host + (nint)offset), value);
    }
}
