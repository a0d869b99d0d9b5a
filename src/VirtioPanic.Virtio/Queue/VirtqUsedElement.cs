using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// <c>struct virtq_used_elem</c> (virtio 1.2 §2.7.8 "The Virtqueue Used Ring"):
/// <c>le32 id</c> @0 (head of the used chain), <c>le32 len</c> @4 (bytes written into its
/// device-writable buffers).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public readonly struct VirtqUsedElement
{
    /// <summary>Size of the wire structure in bytes.</summary>
    public const int Size = 8;

    private readonly uint _id;
    private readonly uint _length;

    /// <summary>Builds a used element.</summary>
    /// <param name="id">Head descriptor index of the completed chain.</param>
    /// <param name="length">Bytes written into the chain's device-writable buffers.</param>
    public VirtqUsedElement(uint id, uint length)
    {
        _id = BitConverter.IsLittleEndian ? id : BinaryPrimitives.ReverseEndianness(id);
        _length = BitConverter.IsLittleEndian ? length : BinaryPrimitives.ReverseEndianness(length);
    }

    /// <summary>Head descriptor index of the completed chain.</summary>
    public uint Id => BitConverter.IsLittleEndian ? _id : BinaryPrimitives.ReverseEndianness(_id);

    /// <summary>Bytes written into the chain's device-writable buffers.</summary>
    public uint Length => BitConverter.IsLittleEndian ? _length : BinaryPrimitives.ReverseEndianness(_length);
}
