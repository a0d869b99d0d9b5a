using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Fuzz;

// Guest memory for the targets: two guarded regions with a hole between them, so addresses from
// the input land in RAM, across a region boundary, in the hole, or past the end, and a host access
// outside a region faults at once (a crash, which libFuzzer records).
//
//   [0x0000, 0x8000)  region 0: the input's memory image is copied here
//   [0x8000, 0x9000)  hole
//   [0x9000, 0xD000)  region 1
//   [0xD000, ...)     nothing
internal sealed class FuzzGuestMemory
{
    internal const ulong ImageSize = 0x8000;
    internal const ulong SecondBase = 0x9000;
    internal const ulong SecondSize = 0x4000;

    internal FuzzGuestMemory()
    {
        Memory = new GuestMemory(
            GuestMemoryRegion.AllocateAnonymous(0, ImageSize),
            GuestMemoryRegion.AllocateAnonymous(SecondBase, SecondSize));
    }

    internal GuestMemory Memory { get; }

    // Zeroes both regions and copies image to guest address 0.
    internal void Load(ReadOnlySpan<byte> image)
    {
        foreach (GuestMemoryRegion region in Memory.Regions)
        {
            _ = Memory.TryGetSlice(region.GuestAddress, region.Size, out GuestMemorySlice slice);
            slice.Span.Clear();
        }

        int length = (int)Math.Min((ulong)image.Length, ImageSize);
        _ = Memory.TryWrite(0, image[..length]);
    }

    // A driver-side store while the device works (ring indices, flags, descriptors).
    internal void GuestWrite(ushort offset, ushort value) => _ = Memory.TryWriteUInt16(offset & (ImageSize - 2), value);
}
