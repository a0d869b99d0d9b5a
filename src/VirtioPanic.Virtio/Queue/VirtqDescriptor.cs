using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// <c>struct virtq_desc</c>, the 16-byte split-ring descriptor (virtio 1.2 §2.7.5).
/// </summary>
/// <remarks>
/// Layout (little-endian): <c>le64 addr</c> @0, <c>le32 len</c> @8, <c>le16 flags</c> @12,
/// <c>le16 next</c> @14. Instances are copies taken out of guest memory in one read; the device
/// validates and uses the copy, never the guest's bytes again.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
public readonly struct VirtqDescriptor
{
    /// <summary>Size of the wire structure in bytes.</summary>
    public const int Size = 16;

    private readonly ulong _address;
    private readonly uint _length;
    private readonly ushort _flags;
    private readonly ushort _next;

    /// <summary>Builds a descriptor as a driver would write it.</summary>
    /// <param name="address">Guest-physical buffer address.</param>
    /// <param name="length">Buffer length in bytes.</param>
    /// <param name="flags">Descriptor flags.</param>
    /// <param name="next">Index of the next descriptor when <see cref="DescriptorFlags.Next"/> is set.</param>
    public VirtqDescriptor(ulong address, uint length, DescriptorFlags flags, ushort next)
    {
        _address = ToLittle(address);
        _length = ToLittle(length);
        _flags = ToLittle((ushort)flags);
        _next = ToLittle(next);
    }

    /// <summary>Guest-physical buffer address.</summary>
    public ulong Address => ToLittle(_address);

    /// <summary>Buffer length in bytes.</summary>
    public uint Length => ToLittle(_length);

    /// <summary>Flags.</summary>
    public DescriptorFlags Flags => (DescriptorFlags)ToLittle(_flags);

    /// <summary>Index of the next descriptor (meaningful with <see cref="DescriptorFlags.Next"/>).</summary>
    public ushort Next => ToLittle(_next);

    // The same operation converts in both directions; on little-endian hosts it is a no-op the JIT removes.
    private static ulong ToLittle(ulong v) => BitConverter.IsLittleEndian ? v : BinaryPrimitives.ReverseEndianness(v);

    private static uint ToLittle(uint v) => BitConverter.IsLittleEndian ? v : BinaryPrimitives.ReverseEndianness(v);

    private static ushort ToLittle(ushort v) => BitConverter.IsLittleEndian ? v : BinaryPrimitives.ReverseEndianness(v);
}
