using System.Buffers;
using System.Buffers.Binary;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Hosting.Dumps;

// The core file this writes: what QEMU's dump-guest-memory writes without paging (QEMU dump/dump.c,
// target/i386/arch_dump.c), which `crash` and `gdb` open. Structures from the System V gABI ELF-64
// object file format as Linux declares them (include/uapi/linux/elf.h: Elf64_Ehdr, Elf64_Phdr,
// Elf64_Nhdr, ET_CORE, PT_LOAD, PT_NOTE, NT_PRSTATUS, EM_X86_64) and the x86-64 prstatus note
// (include/linux/elfcore.h: struct elf_prstatus = elf_prstatus_common + pr_reg + pr_fpvalid).
// Little-endian throughout.
//
//   file offset        size          contents
//   0                  64            Elf64_Ehdr: 7f 'E' 'L' 'F', ELFCLASS64 2, ELFDATA2LSB 1, EV_CURRENT 1, ELFOSABI_NONE;
//                                    e_type ET_CORE 4, e_machine EM_X86_64 62, e_version 1, e_phoff 64,
//                                    e_ehsize 64, e_phentsize 56, e_phnum; no sections
//   64                 56 x phnum    Elf64_Phdr: PT_NOTE first (when there are vCPUs), then one PT_LOAD per
//                                    guest-memory region by ascending physical address: p_paddr = guest
//                                    physical address, p_vaddr 0 (no paging information, as QEMU without
//                                    paging), p_filesz = p_memsz = region size, p_offset page-aligned
//   notes              356 x vCPUs   Elf64_Nhdr {namesz 5, descsz 336, n_type NT_PRSTATUS 1}, "CORE\0" padded
//                                    to 8, then struct elf_prstatus (336 bytes):
//                                      0 pr_info (3 x s32)  12 pr_cursig (s16)  16 pr_sigpend (u64)
//                                     24 pr_sighold (u64)   32 pr_pid (s32) = vCPU index + 1, as QEMU
//                                     36 pr_ppid, 40 pr_pgrp, 44 pr_sid (s32)   48 four timevals (64)
//                                    112 pr_reg: 27 x u64 in user_regs_struct order (Amd64Register)
//                                    328 pr_fpvalid (s32)   332 padding to the struct's 8-byte alignment
//   page-aligned       region sizes  each region's bytes, streamed from guest memory
/// <summary>
/// Writes a VM's guest memory as an ELF64 core file (ET_CORE, x86-64) that <c>crash</c> and
/// <c>gdb</c> open, as QEMU's <c>dump-guest-memory</c> does: one PT_LOAD segment per guest-memory
/// region at its guest-physical address (<c>p_paddr</c>), and a PT_NOTE segment with an NT_PRSTATUS
/// note per vCPU carrying its general registers when the hypervisor supplies them.
/// </summary>
/// <remarks>
/// Guest memory is streamed through a 1 MiB pooled buffer: the writer never holds a copy of guest
/// RAM. The destination need not be seekable. Pause the VM first for a consistent image.
/// </remarks>
public static class ElfCoreWriter
{
    /// <summary>The most vCPUs one core file describes here.</summary>
    public const int MaxCpus = 4096;

    internal const int ElfHeaderSize = 64;
    internal const int ProgramHeaderSize = 56;
    internal const int PrStatusSize = 336;
    internal const int NoteSize = 12 + 8 + PrStatusSize;
    internal const int PageSize = 4096;
    private const int ChunkSize = 1 << 20;

    // e_phnum is 16 bits and 0xffff (PN_XNUM) would mean "see section 0": one PT_NOTE, the rest PT_LOAD.
    private const int MaxRegions = 0xfffe - 1;

    private const ushort ElfTypeCore = 4;
    private const ushort MachineX8664 = 62;
    private const uint SegmentLoad = 1;
    private const uint SegmentNote = 4;
    private const uint NotePrStatus = 1;
    private const uint FlagsReadWriteExecute = 0x7;
    private const int PrPidOffset = 32;
    private const int PrRegOffset = 112;

    /// <summary>Writes the core file of <paramref name="memory"/> and <paramref name="cpus"/> to <paramref name="destination"/>.</summary>
    /// <param name="destination">A writable stream, positioned where the file starts; not disposed.</param>
    /// <param name="memory">The VM's guest memory: every region becomes a PT_LOAD segment.</param>
    /// <param name="cpus">The vCPUs (at most <see cref="MaxCpus"/>, distinct indexes), in the order the notes are written; null or empty for no PT_NOTE segment.</param>
    /// <param name="cancellationToken">Stops the write between chunks; the destination then holds a truncated file.</param>
    /// <returns>The number of bytes written.</returns>
    /// <exception cref="ArgumentException">The destination cannot be written, guest memory has no region, too many regions (more than 65 532), overlapping regions, too many vCPUs, or two vCPUs with one index.</exception>
    /// <exception cref="InvalidOperationException">A region could not be read while it was written (its memory was unmapped meanwhile).</exception>
    public static async Task<long> WriteAsync(Stream destination, GuestMemory memory, IReadOnlyList<ElfCoreCpu>? cpus, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(memory);
        if (!destination.CanWrite)
        {
            throw new ArgumentException("The destination stream cannot be written.", nameof(destination));
        }

        ElfCoreCpu[] cpuList = Cpus(cpus);
        (ulong Address, ulong Size)[] regions = Regions(memory);
        ElfCoreLayout layout = ElfCoreLayout.Compute(regions, cpuList.Length);

        byte[] chunk = ArrayPool<byte>.Shared.Rent(ChunkSize);
        try
        {
            int headerLength = checked((int)layout.FirstSegmentOffset);
            if (headerLength > chunk.Length)
            {
                // 4096 vCPUs and 65 532 regions need about 5 MiB of headers and notes: write them in a buffer of their own.
                byte[] headers = new byte[headerLength];
                WriteHeaders(headers, layout, regions, cpuList);
                await destination.WriteAsync(headers, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                WriteHeaders(chunk.AsSpan(0, headerLength), layout, regions, cpuList);
                await destination.WriteAsync(chunk.AsMemory(0, headerLength), cancellationToken).ConfigureAwait(false);
            }

            long written = headerLength;
            for (int i = 0; i < regions.Length; i++)
            {
                (ulong address, ulong size) = regions[i];
                for (ulong done = 0; done < size;)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    int length = (int)Math.Min((ulong)ChunkSize, size - done);
                    if (!memory.TryRead(address + done, chunk.AsSpan(0, length)))
                    {
                        throw new InvalidOperationException($"Guest memory at 0x{address + done:x} ({length} bytes) could not be read.");
                    }

                    await destination.WriteAsync(chunk.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
                    done += (ulong)length;
                    written += length;
                }

                // Zeros up to the next segment's page-aligned offset.
                long next = i + 1 < regions.Length ? (long)layout.SegmentOffsets[i + 1] : written;
                if (next > written)
                {
                    int gap = checked((int)(next - written));
                    Array.Clear(chunk, 0, gap);
                    await destination.WriteAsync(chunk.AsMemory(0, gap), cancellationToken).ConfigureAwait(false);
                    written = next;
                }
            }

            return written;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    private static ElfCoreCpu[] Cpus(IReadOnlyList<ElfCoreCpu>? cpus)
    {
        if (cpus is null || cpus.Count == 0)
        {
            return [];
        }

        if (cpus.Count > MaxCpus)
        {
            throw new ArgumentException($"At most {MaxCpus} vCPUs (got {cpus.Count}).", nameof(cpus));
        }

        var list = new ElfCoreCpu[cpus.Count];
        var seen = new HashSet<int>();
        for (int i = 0; i < list.Length; i++)
        {
            ElfCoreCpu cpu = cpus[i] ?? throw new ArgumentException($"vCPU entry {i} is null.", nameof(cpus));
            if (!seen.Add(cpu.Index))
            {
                throw new ArgumentException($"Two vCPUs have the index {cpu.Index}.", nameof(cpus));
            }

            list[i] = cpu;
        }

        return list;
    }

    private static (ulong Address, ulong Size)[] Regions(GuestMemory memory)
    {
        IReadOnlyList<GuestMemoryRegion> source = memory.Regions;
        if (source.Count == 0)
        {
            throw new ArgumentException("Guest memory has no region.", nameof(memory));
        }

        if (source.Count > MaxRegions)
        {
            throw new ArgumentException($"At most {MaxRegions} guest-memory regions fit one core file's program headers (got {source.Count}).", nameof(memory));
        }

        var regions = new (ulong Address, ulong Size)[source.Count];
        for (int i = 0; i < regions.Length; i++)
        {
            regions[i] = (source[i].GuestAddress, source[i].Size);
        }

        Array.Sort(regions, static (a, b) => a.Address.CompareTo(b.Address));
        for (int i = 1; i < regions.Length; i++)
        {
            if (regions[i].Address - regions[i - 1].Address < regions[i - 1].Size)
            {
                throw new ArgumentException($"Guest-memory regions at 0x{regions[i - 1].Address:x} and 0x{regions[i].Address:x} overlap.", nameof(memory));
            }
        }

        return regions;
    }

    private static void WriteHeaders(Span<byte> buffer, ElfCoreLayout layout, (ulong Address, ulong Size)[] regions, ElfCoreCpu[] cpus)
    {
        buffer.Clear();

        // Elf64_Ehdr.
        buffer[0] = 0x7f;
        buffer[1] = (byte)'E';
        buffer[2] = (byte)'L';
        buffer[3] = (byte)'F';
        buffer[4] = 2; // ELFCLASS64
        buffer[5] = 1; // ELFDATA2LSB
        buffer[6] = 1; // EV_CURRENT
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[16..], ElfTypeCore);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[18..], MachineX8664);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[20..], 1); // e_version
        BinaryPrimitives.WriteUInt64LittleEndian(buffer[32..], ElfHeaderSize); // e_phoff
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[52..], ElfHeaderSize); // e_ehsize
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[54..], ProgramHeaderSize); // e_phentsize
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[56..], (ushort)layout.ProgramHeaderCount); // e_phnum

        int header = ElfHeaderSize;
        if (cpus.Length > 0)
        {
            WriteProgramHeader(buffer.Slice(header, ProgramHeaderSize), SegmentNote, flags: 0, layout.NotesOffset, physicalAddress: 0, (ulong)layout.NotesSize, align: 4);
            header += ProgramHeaderSize;
        }

        for (int i = 0; i < regions.Length; i++)
        {
            WriteProgramHeader(buffer.Slice(header, ProgramHeaderSize), SegmentLoad, FlagsReadWriteExecute, layout.SegmentOffsets[i], regions[i].Address, regions[i].Size, align: 0);
            header += ProgramHeaderSize;
        }

        int note = (int)layout.NotesOffset;
        foreach (ElfCoreCpu cpu in cpus)
        {
            Span<byte> n = buffer.Slice(note, NoteSize);
            BinaryPrimitives.WriteUInt32LittleEndian(n, 5); // namesz: "CORE\0"
            BinaryPrimitives.WriteUInt32LittleEndian(n[4..], PrStatusSize); // descsz
            BinaryPrimitives.WriteUInt32LittleEndian(n[8..], NotePrStatus);
            "CORE"u8.CopyTo(n[12..]);
            Span<byte> prstatus = n[20..];
            BinaryPrimitives.WriteInt32LittleEndian(prstatus[PrPidOffset..], cpu.Index + 1);
            if (cpu.Registers is { } registers)
            {
                for (int r = 0; r < ElfCoreCpu.RegisterCount; r++)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(prstatus[(PrRegOffset + (8 * r))..], registers[r]);
                }
            }

            note += NoteSize;
        }
    }

    private static void WriteProgramHeader(Span<byte> p, uint type, uint flags, ulong offset, ulong physicalAddress, ulong size, ulong align)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(p, type);
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], flags);
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], offset);
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], 0); // p_vaddr: no paging information
        BinaryPrimitives.WriteUInt64LittleEndian(p[24..], physicalAddress);
        BinaryPrimitives.WriteUInt64LittleEndian(p[32..], size); // p_filesz
        BinaryPrimitives.WriteUInt64LittleEndian(p[40..], size); // p_memsz
        BinaryPrimitives.WriteUInt64LittleEndian(p[48..], align);
    }
}
