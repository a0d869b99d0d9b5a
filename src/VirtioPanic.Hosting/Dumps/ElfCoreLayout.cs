namespace VirtioPanic.Hosting.Dumps;

// Where everything goes in the core file (the layout table is in ElfCoreWriter.cs), computed before
// a byte is written so that a non-seekable destination works and every offset is checked once.
internal sealed class ElfCoreLayout
{
    private ElfCoreLayout(int programHeaderCount, ulong notesOffset, int notesSize, ulong[] segmentOffsets, ulong firstSegmentOffset, ulong fileSize)
    {
        ProgramHeaderCount = programHeaderCount;
        NotesOffset = notesOffset;
        NotesSize = notesSize;
        SegmentOffsets = segmentOffsets;
        FirstSegmentOffset = firstSegmentOffset;
        FileSize = fileSize;
    }

    internal int ProgramHeaderCount { get; }

    internal ulong NotesOffset { get; }

    internal int NotesSize { get; }

    internal ulong[] SegmentOffsets { get; }

    internal ulong FirstSegmentOffset { get; }

    internal ulong FileSize { get; }

    internal static ElfCoreLayout Compute((ulong Address, ulong Size)[] regions, int cpuCount)
    {
        int headers = regions.Length + (cpuCount > 0 ? 1 : 0);
        ulong notesOffset = (ulong)ElfCoreWriter.ElfHeaderSize + ((ulong)headers * ElfCoreWriter.ProgramHeaderSize);
        int notesSize = cpuCount * ElfCoreWriter.NoteSize;
        ulong offset = AlignUp(notesOffset + (ulong)notesSize);
        ulong first = offset;
        var offsets = new ulong[regions.Length];
        for (int i = 0; i < regions.Length; i++)
        {
            offsets[i] = offset;
            // checked: a region list whose sizes add up past 2^64 is refused, not wrapped.
            offset = AlignUp(checked(offset + regions[i].Size));
        }

        // The file ends at the last region's end, without padding after it.
        ulong fileSize = offsets[^1] + regions[^1].Size;
        return new ElfCoreLayout(headers, notesOffset, notesSize, offsets, first, fileSize);
    }

    private static ulong AlignUp(ulong value) => checked(value + (ElfCoreWriter.PageSize - 1)) & ~(ulong)(ElfCoreWriter.PageSize - 1);
}
