using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using VirtioPanic.Hosting.Dumps;
using VirtioPanic.Hosting.Tests.Rig;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Hosting.Tests.Dumps;

// The ELF core writer, checked by an independent reader: Debian's readelf (binutils, installed by
// .ci/prerequisites) reads the headers, the segments and the notes; the test then reads the bytes
// at each segment's offset back against guest memory.
public sealed partial class ElfCoreWriterTests
{
    private const ulong LowBase = 0;
    private const ulong LowSize = 2UL << 20;
    private const ulong HighBase = 1UL << 32;
    private const ulong HighSize = (1UL << 20) + 4096 * 3; // not a multiple of the 1 MiB chunk: the tail is written too

    [Test]
    public async Task WriteAsync_TwoRegionsTwoCpus_ReadelfSeesACoreWithALoadSegmentPerRegionAndAPrstatusPerCpu()
    {
        using var directory = new TempDirectory();
        using GuestMemory memory = TwoRegions();
        ulong[] registers0 = Registers(0x1000), registers1 = Registers(0x2000);
        string path = directory.File("vm.core");

        long written;
        await using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
        {
            written = await ElfCoreWriter.WriteAsync(file, memory, [new ElfCoreCpu(0, registers0), new ElfCoreCpu(1, registers1)]);
        }

        string header = Readelf("-h", path), segments = Readelf("-l", "-W", path), notes = Readelf("-n", "-W", path);
        Segment[] loads = [.. Segments(segments).Where(s => s.Type == "LOAD")];
        Segment note = Segments(segments).Single(s => s.Type == "NOTE");
        byte[] bytes = File.ReadAllBytes(path);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(written, Is.EqualTo(new FileInfo(path).Length));
            Assert.That(header, Does.Match(@"Class:\s+ELF64").And.Match(@"Data:\s+2's complement, little endian").And.Match(@"Type:\s+CORE \(Core file\)").And.Match(@"Machine:\s+Advanced Micro Devices X86-64"));
            Assert.That(loads.Select(s => (s.PhysicalAddress, s.FileSize, s.MemorySize)), Is.EqualTo(new[] { (LowBase, LowSize, LowSize), (HighBase, HighSize, HighSize) }), "a PT_LOAD covering each region, at its physical address");
            Assert.That(loads.Select(s => s.Offset % 4096), Is.All.Zero, "page-aligned data");
            Assert.That(Regex.Count(notes, @"CORE\s+0x00000150\s+NT_PRSTATUS"), Is.EqualTo(2), notes);
            Assert.That(note.FileSize, Is.EqualTo(2UL * ElfCoreWriter.NoteSize));
            Assert.That(bytes.AsSpan((int)loads[0].Offset, (int)LowSize).SequenceEqual(Read(memory, LowBase, LowSize)), Is.True, "low region bytes");
            Assert.That(bytes.AsSpan((int)loads[1].Offset, (int)HighSize).SequenceEqual(Read(memory, HighBase, HighSize)), Is.True, "high region bytes");

            // pr_pid (vCPU index + 1) and pr_reg[rip] of each note, as elfcore.h lays them out.
            int desc0 = (int)note.Offset + 20, desc1 = desc0 + ElfCoreWriter.NoteSize;
            Assert.That((BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(desc0 + 32)), BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(desc1 + 32))), Is.EqualTo((1, 2)));
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(desc0 + 112 + (8 * (int)Amd64Register.Rip))), Is.EqualTo(registers0[(int)Amd64Register.Rip]));
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(desc1 + 112 + (8 * (int)Amd64Register.Rsp))), Is.EqualTo(registers1[(int)Amd64Register.Rsp]));
        }
    }

    [Test]
    public async Task WriteAsync_NoCpus_WritesNoNoteSegment_AndANonSeekableStreamWorks()
    {
        using var directory = new TempDirectory();
        using GuestMemory memory = TwoRegions();
        string path = directory.File("vm.core");
        await using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
        await using (var forwardOnly = new ForwardOnlyStream(file))
        {
            await ElfCoreWriter.WriteAsync(forwardOnly, memory, cpus: null);
        }

        Segment[] segments = [.. Segments(Readelf("-l", "-W", path))];

        Assert.That(segments.Select(s => s.Type), Is.EqualTo(new[] { "LOAD", "LOAD" }));
    }

    [Test]
    public async Task WriteAsync_StreamsGuestMemory_WithoutCopyingIt()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(64UL << 20);
        await using var sink = new CountingStream();
        await ElfCoreWriter.WriteAsync(sink, memory, [new ElfCoreCpu(0)]); // warm up (JIT, pool)

        long before = GC.GetTotalAllocatedBytes(precise: true);
        await ElfCoreWriter.WriteAsync(sink, memory, [new ElfCoreCpu(0)]);
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;

        Assert.That(allocated, Is.LessThan(1L << 20), "64 MiB written through a pooled buffer, not a copy");
    }

    [Test]
    public void WriteAsync_InvalidArguments_AreRefused()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(1UL << 20);
        using var readOnly = new MemoryStream([], writable: false);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(() => ElfCoreWriter.WriteAsync(readOnly, memory, null), Throws.ArgumentException.With.Message.Contains("cannot be written"));
            Assert.That(() => ElfCoreWriter.WriteAsync(Stream.Null, memory, [new ElfCoreCpu(3), new ElfCoreCpu(3)]), Throws.ArgumentException.With.Message.Contains("index 3"));
            Assert.That(() => ElfCoreWriter.WriteAsync(Stream.Null, memory, [.. Enumerable.Range(0, ElfCoreWriter.MaxCpus + 1).Select(i => new ElfCoreCpu(i))]), Throws.ArgumentException.With.Message.Contains("At most 4096"));
            Assert.That(() => new ElfCoreCpu(0, new ulong[26]), Throws.ArgumentException.With.Message.Contains("exactly 27"));
            Assert.That(() => new ElfCoreCpu(-1), Throws.InstanceOf<ArgumentOutOfRangeException>());
        }
    }

    [Test]
    public void WriteAsync_Cancelled_StopsBetweenChunks()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(8UL << 20);
        using var cancel = new CancellationTokenSource();
        using var sink = new CountingStream { AfterWrite = s => cancel.Cancel() };

        Assert.That(async () => await ElfCoreWriter.WriteAsync(sink, memory, null, cancel.Token), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(sink.Length, Is.LessThan(2L << 20), "stopped after the first chunks");
    }

    private static GuestMemory TwoRegions()
    {
        var memory = new GuestMemory(GuestMemoryRegion.AllocateAnonymous(HighBase, HighSize), GuestMemoryRegion.AllocateAnonymous(LowBase, LowSize));
        var random = new Random(17);
        foreach ((ulong address, ulong size) in new[] { (LowBase, LowSize), (HighBase, HighSize) })
        {
            byte[] pattern = new byte[size];
            random.NextBytes(pattern);
            Assert.That(memory.TryWrite(address, pattern), Is.True);
        }

        return memory;
    }

    private static ulong[] Registers(ulong seed) => [.. Enumerable.Range(0, ElfCoreCpu.RegisterCount).Select(i => seed + (ulong)i)];

    private static byte[] Read(GuestMemory memory, ulong address, ulong size)
    {
        byte[] data = new byte[size];
        Assert.That(memory.TryRead(address, data), Is.True);
        return data;
    }

    private static string Readelf(params string[] args)
    {
        string readelf = File.Exists("/usr/bin/readelf") ? "/usr/bin/readelf" : "readelf";
        var start = new ProcessStartInfo(readelf) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            Assert.Fail($"readelf is missing: run .ci/prerequisites (it installs Debian's binutils). {ex.Message}");
            throw;
        }

        using (process)
        {
            Task<string> output = process.StandardOutput.ReadToEndAsync();
            string error = process.StandardError.ReadToEnd();
            Assert.That(process.WaitForExit(TimeSpan.FromSeconds(30)), Is.True, "readelf hung");
            Assert.That((process.ExitCode, error), Is.EqualTo((0, string.Empty)), "readelf " + string.Join(' ', args));
            return output.Result;
        }
    }

    // readelf -l -W: "  LOAD  0x001000 0x0000000000000000 0x0000000100000000 0x103000 0x103000 RWE 0x0".
    private static IEnumerable<Segment> Segments(string text)
    {
        foreach (Match m in SegmentLine().Matches(text))
        {
            yield return new Segment(m.Groups[1].Value, Hex(m.Groups[2].Value), Hex(m.Groups[4].Value), Hex(m.Groups[5].Value), Hex(m.Groups[6].Value));
        }
    }

    private static ulong Hex(string text) => ulong.Parse(text.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^\s+(LOAD|NOTE)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)", RegexOptions.Multiline)]
    private static partial Regex SegmentLine();

    private sealed record Segment(string Type, ulong Offset, ulong PhysicalAddress, ulong FileSize, ulong MemorySize);

    private sealed class ForwardOnlyStream(Stream inner) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);
    }

    private sealed class CountingStream : Stream
    {
        private long _length;

        public Action<CountingStream>? AfterWrite { get; init; }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => _length;

        public override long Position { get => _length; set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _length += buffer.Length;
            AfterWrite?.Invoke(this);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }
    }
}
