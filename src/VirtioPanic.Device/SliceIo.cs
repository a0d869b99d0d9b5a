using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Device;

// Gather and scatter over validated guest buffers (copies of a chain's slices). Offsets are in
// the concatenated bytes; nothing is ever accessed outside the slices, whose bounds the queue
// engine validated against guest memory.
internal static class SliceIo
{
    internal static uint TotalLength(ReadOnlySpan<GuestMemorySlice> buffers)
    {
        ulong total = 0;
        foreach (GuestMemorySlice buffer in buffers)
        {
            total += buffer.Length;
        }

        return total > uint.MaxValue ? uint.MaxValue : (uint)total;
    }

    internal static int Gather(ReadOnlySpan<GuestMemorySlice> buffers, Span<byte> destination, uint offset)
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

    internal static int Scatter(ReadOnlySpan<GuestMemorySlice> buffers, ReadOnlySpan<byte> source, uint offset)
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
