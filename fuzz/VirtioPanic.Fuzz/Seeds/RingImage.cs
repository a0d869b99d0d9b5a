using System.Buffers.Binary;

namespace VirtioPanic.Fuzz;

// Builds a guest memory image the way a driver lays out its rings and buffers (for the seeds).
internal sealed class RingImage
{
    private readonly byte[] _image;
    private int _used;

    internal RingImage(int size = 0x8000)
    {
        _image = new byte[size];
    }

    // The image up to the highest byte written (trailing zeros are implied by the targets).
    internal byte[] ToArray() => _image.AsSpan(0, _used).ToArray();

    internal RingImage Bytes(ulong address, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(_image.AsSpan((int)address));
        _used = Math.Max(_used, (int)address + bytes.Length);
        return this;
    }

    internal RingImage U16(ulong address, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        return Bytes(address, b);
    }

    internal RingImage U32(ulong address, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        return Bytes(address, b);
    }

    internal RingImage U64(ulong address, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        return Bytes(address, b);
    }

    // Split ring (virtio 1.2 §2.7.5): struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }.
    internal RingImage SplitDescriptor(ulong table, int index, ulong address, uint length, ushort flags, ushort next = 0)
    {
        ulong at = table + ((ulong)index * 16);
        return U64(at, address).U32(at + 8, length).U16(at + 12, flags).U16(at + 14, next);
    }

    // struct virtq_avail { le16 flags; le16 idx; le16 ring[]; }: publishes heads in order.
    internal RingImage SplitAvail(ulong avail, params ReadOnlySpan<ushort> heads)
    {
        U16(avail, 0).U16(avail + 2, (ushort)heads.Length);
        for (int i = 0; i < heads.Length; i++)
        {
            U16(avail + 4 + ((ulong)i * 2), heads[i]);
        }

        return this;
    }

    // Packed ring (§2.8.13): struct pvirtq_desc { le64 addr; le32 len; le16 id; le16 flags; }.
    internal RingImage PackedDescriptor(ulong ring, int slot, ulong address, uint length, ushort id, ushort flags)
    {
        ulong at = ring + ((ulong)slot * 16);
        return U64(at, address).U32(at + 8, length).U16(at + 12, id).U16(at + 14, flags);
    }
}
