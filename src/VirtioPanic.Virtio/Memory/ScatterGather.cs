namespace VirtioPanic.Virtio.Memory;

/// <summary>
/// Copies between a contiguous span and a list of validated guest buffers (a chain's readable or
/// writable part, or copies of it a device kept), addressing the buffers as one concatenated byte
/// stream. Nothing outside the slices is touched.
/// </summary>
public static class ScatterGather
{
    /// <summary>Total bytes of <paramref name="buffers"/>, saturated at <see cref="uint.MaxValue"/>.</summary>
    /// <param name="buffers">Validated guest buffers.</param>
    public static uint TotalLength(ReadOnlySpan<GuestMemorySlice> buffers)
    {
        ulong total = 0;
        foreach (GuestMemorySlice buffer in buffers)
        {
            total += buffer.Length;
        }

        return total > uint.MaxValue ? uint.MaxValue : (uint)total;
    }

    /// <summary>Copies bytes out of <paramref name="buffers"/>, starting <paramref name="offset"/> bytes into them.</summary>
    /// <param name="buffers">Validated guest buffers.</param>
    /// <param name="destination">Receives the bytes.</param>
    /// <param name="offset">Offset in the concatenated buffers.</param>
    /// <returns>Bytes copied; fewer than <c>destination.Length</c> when the buffers end first.</returns>
    public static int Gather(ReadOnlySpan<GuestMemorySlice> buffers, Span<byte> destination, uint offset = 0)
    {
        int copied = 0;
        foreach (GuestMemorySlice buffer in buffers)
        {
            if (destination.IsEmpty)
            {
                break;
            }

            if (offset >= buffer.Length)
            {
                offset -= buffer.Length;
                continue;
            }

            int n = (int)Math.Min(buffer.Length - offset, (uint)destination.Length);
            buffer.Slice(offset, (uint)n).Span.CopyTo(destination);
            destination = destination[n..];
            copied += n;
            offset = 0;
        }

        return copied;
    }

    /// <summary>Copies <paramref name="source"/> into <paramref name="buffers"/>, starting <paramref name="offset"/> bytes into them.</summary>
    /// <param name="buffers">Validated, device-writable guest buffers.</param>
    /// <param name="source">Bytes to write.</param>
    /// <param name="offset">Offset in the concatenated buffers.</param>
    /// <returns>Bytes written; fewer than <c>source.Length</c> when the buffers end first.</returns>
    public static int Scatter(ReadOnlySpan<GuestMemorySlice> buffers, ReadOnlySpan<byte> source, uint offset = 0)
    {
        int written = 0;
        foreach (GuestMemorySlice buffer in buffers)
        {
            if (source.IsEmpty)
            {
                break;
            }

            if (offset >= buffer.Length)
            {
                offset -= buffer.Length;
                continue;
            }

            int n = (int)Math.Min(buffer.Length - offset, (uint)source.Length);
            source[..n].CopyTo(buffer.Slice(offset, (uint)n).Span);
            source = source[n..];
            written += n;
            offset = 0;
        }

        return written;
    }
}
