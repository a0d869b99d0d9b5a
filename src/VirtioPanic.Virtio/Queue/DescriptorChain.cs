using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// A popped and fully validated descriptor chain: its device-readable buffers, then its
/// device-writable buffers, each already translated to a <see cref="GuestMemorySlice"/>.
/// </summary>
/// <remarks>
/// The chain is a view over the queue's scratch storage and is valid until the next pop from the
/// same queue; keep <see cref="Token"/> (and copies of the slices you need) to complete it later.
/// Nothing here allocates.
/// </remarks>
public readonly ref struct DescriptorChain
{
    private readonly ReadOnlySpan<GuestMemorySlice> _buffers;
    private readonly int _readableCount;

    internal DescriptorChain(ChainToken token, ReadOnlySpan<GuestMemorySlice> buffers, int readableCount, uint readableLength, uint writableLength)
    {
        Token = token;
        _buffers = buffers;
        _readableCount = readableCount;
        ReadableLength = readableLength;
        WritableLength = writableLength;
    }

    // The one-direct-descriptor chain every fast path builds (split and packed, pop and batch).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static DescriptorChain OneBuffer(ChainToken token, GuestMemorySlice[] scratch, bool writable, uint length) =>
        new(token, new ReadOnlySpan<GuestMemorySlice>(scratch, 0, 1), writable ? 0 : 1, writable ? 0 : length, writable ? length : 0);

    // The same from the descriptor's flags (WRITE or not), without branches: the batch loop's form.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static DescriptorChain OneBuffer(ChainToken token, ReadOnlySpan<GuestMemorySlice> first, DescriptorFlags flags, uint length)
    {
        uint writable = ((uint)flags >> 1) & 1;   // DescriptorFlags.Write is bit 1
        uint writableMask = 0u - writable;
        return new(token, first, (int)(writable ^ 1), length & ~writableMask, length & writableMask);
    }

    /// <summary>What to pass to <see cref="Virtqueue.AddUsed"/> when the chain is complete.</summary>
    public ChainToken Token { get; }

    /// <summary>Every buffer of the chain, readable ones first.</summary>
    public ReadOnlySpan<GuestMemorySlice> Buffers => _buffers;

    /// <summary>The device-readable buffers, in chain order.</summary>
    public ReadOnlySpan<GuestMemorySlice> Readable => _buffers[.._readableCount];

    /// <summary>The device-writable buffers, in chain order.</summary>
    public ReadOnlySpan<GuestMemorySlice> Writable => _buffers[_readableCount..];

    /// <summary>Total bytes of the readable buffers.</summary>
    public uint ReadableLength { get; }

    /// <summary>Total bytes of the writable buffers.</summary>
    public uint WritableLength { get; }

    /// <summary>
    /// Gathers the readable bytes starting at <paramref name="offset"/> into
    /// <paramref name="destination"/>. Copying first is what makes the data safe to validate:
    /// the guest can change its buffers while the device looks at them.
    /// </summary>
    /// <param name="destination">Where to copy to.</param>
    /// <param name="offset">Offset in the concatenated readable bytes.</param>
    /// <returns>Bytes copied: less than <c>destination.Length</c> when the readable part is shorter.</returns>
    public int CopyFromReadable(Span<byte> destination, uint offset = 0) => ScatterGather.Gather(Readable, destination, offset);

    /// <summary>Scatters <paramref name="source"/> into the writable buffers starting at <paramref name="offset"/>.</summary>
    /// <param name="source">Bytes to write.</param>
    /// <param name="offset">Offset in the concatenated writable bytes.</param>
    /// <returns>Bytes written: less than <c>source.Length</c> when the writable part is shorter.</returns>
    public int CopyToWritable(ReadOnlySpan<byte> source, uint offset = 0) => ScatterGather.Scatter(Writable, source, offset);
}
