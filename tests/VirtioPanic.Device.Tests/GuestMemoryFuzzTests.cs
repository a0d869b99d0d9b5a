using System.Buffers.Binary;
using CsCheck;
using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Tests;

// WDT-DEV-34: arbitrary guest memory contents under an active device never throw and never make
// the device touch memory outside the guest. Guest memory is three guarded anonymous regions with
// holes between them: a stray host access would hit a guard page and crash the test process.
public sealed class GuestMemoryFuzzTests
{
    private const ulong LowBase = 0x0;
    private const ulong LowSize = 0x10000;
    private const ulong HighBase = 0x800000;
    private const ulong HighSize = 0x10000;

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_34_ArbitraryGuestMemoryAndDriverActions_NeverThrow()
    {
        Gen<Op[]> script = Gen.Select(Gen.Int[0, 10], Gen.Int[0, 2], Gen.UInt, Gen.UInt, Gen.Byte.Array[1, 96], (kind, queue, a, b, bytes) => new Op(kind, queue, a, b, bytes)).Array[1, 48];

        long protocolErrors = 0;
        long reports = 0;
        script.Sample(ops => Run(ops, ref protocolErrors, ref reports), iter: 500, threads: 1);

        // The scripts do reach the device's error and reporting paths, not just its early exits.
        Assert.Multiple(() =>
        {
            Assert.That(protocolErrors, Is.GreaterThan(100));
            Assert.That(reports, Is.GreaterThan(0));
        });
    }

    private static void Run(Op[] ops, ref long protocolErrors, ref long reports)
    {
        var memory = new GuestMemory(
            GuestMemoryRegion.AllocateAnonymous(LowBase, LowSize),
            GuestMemoryRegion.AllocateAnonymous(WatchdogRig.RamBase, WatchdogRig.RamSize),
            GuestMemoryRegion.AllocateAnonymous(HighBase, HighSize));
        try
        {
            using var rig = new WatchdogRig(new WatchdogDeviceOptions { EventCapacity = 16 }, memory);
            rig.Activate(WatchdogFeatures.All);
            var records = new List<PostedRecord> { rig.PostRecordBuffer(recordLength: 1024), rig.PostRecordBuffer(recordLength: 1024) };
            rig.PostNoticeBuffer();
            bool paused = false;
            foreach (Op op in ops)
            {
                Step(rig, op, records, ref paused);
            }

            // The device is still answering its host.
            WatchdogDeviceStatus status = rig.Device.GetStatus();
            Assert.That(status.IsPresent, Is.True);
            protocolErrors += status.ProtocolErrors;
            foreach (WatchdogEvent evt in rig.DrainEvents())
            {
                Assert.That(evt.DeviceId, Is.EqualTo("watchdog0"));
                reports += evt is GuestReportEvent ? 1 : 0;
            }

            rig.Device.Reset();
        }
        finally
        {
            memory.Dispose();
        }
    }

    private static void Step(WatchdogRig rig, Op op, List<PostedRecord> records, ref bool paused)
    {
        SplitRingDriver? driver = rig.Drivers[op.Queue];
        switch (op.Kind)
        {
            case 0 when driver is not null:
                // Scribble over the descriptor table or the available ring.
                VirtqueueConfig config = driver.Config;
                bool table = (op.A & 1) == 0;
                ulong start = table ? config.DescriptorArea : config.DriverArea;
                ulong size = table ? SplitRingLayout.DescriptorTableSize(config.Size) : SplitRingLayout.AvailRingSize(config.Size);
                ulong offset = op.B % size;
                int length = (int)Math.Min((ulong)op.Bytes.Length, size - offset);
                rig.Memory.TryWrite(start + offset, op.Bytes.AsSpan(0, length));
                rig.Device.Notify(op.Queue);
                break;

            case 1 when driver is not null:
                driver.StoreAvailIndex((ushort)op.A);
                rig.Device.Notify(op.Queue);
                break;

            case 2 when driver is not null:
                // A descriptor anywhere (holes, region edges, beyond guest memory), any flags.
                ulong[] bases = [LowBase + LowSize - 8, WatchdogRig.RamBase, HighBase - 4, HighBase + HighSize - 2, 0xFFFF_FFFF_FFFF_F000, op.A];
                ushort index = (ushort)(op.B % driver.Size);
                driver.WriteDescriptor(index, new VirtqDescriptor(bases[op.B % (uint)bases.Length] + (op.A & 0xFF), op.A % 4096, (DescriptorFlags)(op.B >> 16 & 0x7), (ushort)(op.A >> 16)));
                driver.WriteAvailEntry(driver.AvailIndex, index);
                driver.StoreAvailIndex((ushort)(driver.AvailIndex + 1));
                rig.Device.Notify(op.Queue);
                break;

            case 3:
                Span<byte> value = stackalloc byte[4];
                BinaryPrimitives.WriteUInt32LittleEndian(value, op.A);
                int width = (int)(op.B % 3) switch { 0 => 1, 1 => 2, _ => 4 };
                uint configOffset = op.B % (uint)(20 - width + 1);
                rig.Device.WriteConfig(configOffset, value[..width]);
                Span<byte> read = stackalloc byte[width];
                rig.Device.ReadConfig(configOffset, read);
                break;

            case 4:
                rig.Time.Advance(TimeSpan.FromMilliseconds(op.A % 30_000));
                break;

            case 5 when records.Count > 0:
                // A committed record with an arbitrary header and body.
                PostedRecord record = records[(int)(op.A % (uint)records.Count)];
                byte[] body = new byte[Math.Min(record.RecordLength, 80 + (op.B % 200))];
                new Random((int)op.B).NextBytes(body);
                op.Bytes.AsSpan(0, Math.Min(op.Bytes.Length, body.Length)).CopyTo(body);
                BinaryPrimitives.WriteUInt32LittleEndian(body, RecordSpec.Committed);
                rig.Memory.TryWrite(record.RecordAddress, body);
                rig.Device.Notify(1);
                break;

            case 6 when rig.Drivers[0] is not null:
                ulong request = rig.Buffer(16);
                ulong response = rig.Buffer(16);
                byte[] bytes = new byte[16];
                op.Bytes.AsSpan(0, Math.Min(16, op.Bytes.Length)).CopyTo(bytes);
                rig.Memory.TryWrite(request, bytes);
                if (rig.Drivers[0]!.TryAdd([new DriverBuffer(request, 16, false), new DriverBuffer(response, op.A % 32 + 1, true)], out _))
                {
                    rig.Drivers[0]!.Publish();
                    rig.Device.Notify(0);
                }

                break;

            case 7:
                rig.ResetDevice();
                rig.Allocator.Reset();
                rig.Activate(WatchdogFeatures.All);
                records.Clear();
                records.Add(rig.PostRecordBuffer(recordLength: 1024));
                rig.PostNoticeBuffer();
                break;

            case 8:
                if (paused)
                {
                    rig.Device.Resume();
                }
                else
                {
                    rig.Device.Pause();
                }

                paused = !paused;
                break;

            case 9:
                byte[] saved = rig.Device.SaveState();
                rig.Device.RestoreState(saved);
                paused = true;
                break;

            default:
                if (rig.Drivers[op.Queue] is not null)
                {
                    rig.Device.Notify(op.Queue);
                }

                break;
        }
    }

    private sealed record Op(int Kind, int Queue, uint A, uint B, byte[] Bytes);
}
