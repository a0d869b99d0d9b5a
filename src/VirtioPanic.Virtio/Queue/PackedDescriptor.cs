using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// <c>struct pvirtq_desc</c>, the 16-byte packed-ring descriptor (virtio 1.2 §2.8.13
/// "Packed Virtqueue Descriptor Ring").
/// </summary>
/// <remarks>
/// Layout (little-endian): <c>le64 addr</c> @0, <c>le32 len</c> @8, <c>le16 id</c> @12,
/// <c>le16 flags</c> @14. The same slot is written by the driver (available) and then by the
/// device (used); the AVAIL and USED flag bits together with each side's wrap counter say which.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
public readonly struct PackedDescriptor
{
    /// <summary>Size of the wire structure in bytes.</summary>
    public const int Size = 16;

    /// <summary>Byte offset of <c>flags</c> inside the descriptor.</summary>
    public const uint FlagsOffset = 14;

    private readonly ulong _address;
    private readonly uint _length;
    private readonly ushort _id;
    private readonly ushort _flags;

    /// <summary>Builds a packed descriptor.</summary>
    /// <param name="address">Guest-physical buffer address.</param>
    /// <param name="length">Buffer length (available) or bytes written (used).</param>
    /// <param name="id">Buffer id.</param>
    /// <param name="flags">Flags including AVAIL/USED.</param>
    public PackedDescriptor(ulong address, uint length, ushort id, DescriptorFlags flags)
    {
        _address = BitConverter.IsLittleEndian ? address : BinaryPrimitives.ReverseEndianness(address);
        _length = BitConverter.IsLittleEndian ? length : BinaryPrimitives.ReverseEndianness(length);
        _id = BitConverter.IsLittleEndian ? id : BinaryPrimitives.ReverseEndianness(id);
        _flags = BitConverter.IsLittleEndian ? (ushort)flags : BinaryPrimitives.ReverseEndianness((ushort)flags);
    }

    /// <summary>Guest-physical buffer address.</summary>
    public ulong Address => BitConverter.IsLittleEndian ? _address : BinaryPrimitives.ReverseEndianness(_address);

    /// <summary>Buffer length (available) or bytes written (used).</summary>
    public uint Length => BitConverter.IsLittleEndian ? _length : BinaryPrimitives.ReverseEndianness(_length);

    /// <summary>Buffer id.</summary>
    public ushort Id => BitConverter.IsLittleEndian ? _id : BinaryPrimitives.ReverseEndianness(_id);

    /// <summary>Flags.</summary>
    public DescriptorFlags Flags => (DescriptorFlags)(BitConverter.IsLittleEndian ? _flags : BinaryPrimitives.ReverseEndianness(_flags));
}
