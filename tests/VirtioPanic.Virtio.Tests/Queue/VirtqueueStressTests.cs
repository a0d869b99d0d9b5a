using System.Buffers.Binary;
using System.Diagnostics;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// A driver thread and a device thread share one ring, as a vCPU and a device worker do. The
// driver stamps each chain with a sequence number; the device must see every number exactly once
// and in order, and the driver must get every chain back. Kicks and interrupts go through the
// real suppression logic (event index or flags), so a lost wakeup shows up as a stall.
public sealed class VirtqueueStressTests
{
    private const int Chains = 10_000_000;
    private static readonly TimeSpan s_deadline = TimeSpan.FromMinutes(3);

    [TestCase(VirtqueueFormat.Split, true)]
    [TestCase(VirtqueueFormat.Split, false)]
    [TestCase(VirtqueueFormat.Packed, true)]
    [TestCase(VirtqueueFormat.Packed, false)]
    public void CrossThread_TenMillionChains_EverySequenceSeenOnceInOrder(VirtqueueFormat format, bool eventIndex)
    {
        const ushort size = 256;
        using var ring = RingPair.Create(format, size, eventIndex ? VirtqueueFeatures.EventIndex : 0);
        var deadline = Stopwatch.StartNew();
        long doorbell = 0;     // driver -> device kicks
        long interrupts = 0;   // device -> driver interrupts
        long deviceSeen = 0;
        long outOfOrder = 0;
        VirtqueueStatus deviceError = VirtqueueStatus.Ok;

        var device = new Thread(() =>
        {
            long expected = 0;
            Span<byte> stamp = stackalloc byte[8];
            long lastBell = 0;
            while (expected < Chains && deadline.Elapsed < s_deadline)
            {
                ring.Queue.DisableNotification();
                int batch = 0;
                while (batch < 64 && ring.Queue.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok)
                {
                    chain.CopyFromReadable(stamp);
                    if (BinaryPrimitives.ReadInt64LittleEndian(stamp) != expected)
                    {
                        outOfOrder++;
                    }

                    expected++;
                    ring.Queue.AddUsed(chain.Token, 0);
                    batch++;
                }

                if (ring.Queue.Status != VirtqueueStatus.Ok)
                {
                    deviceError = ring.Queue.Status;
                    break;
                }

                if (ring.Queue.FlushUsed())
                {
                    Interlocked.Increment(ref interrupts);
                }

                if (batch == 0 && !ring.Queue.EnableNotification())
                {
                    var spin = default(SpinWait);
                    while (Volatile.Read(ref doorbell) == lastBell && deadline.Elapsed < s_deadline)
                    {
                        spin.SpinOnce(sleep1Threshold: -1);
                    }

                    lastBell = Volatile.Read(ref doorbell);
                }
            }

            Volatile.Write(ref deviceSeen, expected);
        }) { IsBackground = true, Name = "device" };

        long reaped = 0;
        long produced = 0;
        UsedBufferStatus driverError = UsedBufferStatus.Ok;
        var driver = new Thread(() =>
        {
            long lastInterrupt = 0;
            Span<DriverBuffer> one = new DriverBuffer[1];
            while (reaped < Chains && deadline.Elapsed < s_deadline)
            {
                int added = 0;
                while (produced < Chains && ring.Driver.FreeCount > 0 && added < 64)
                {
                    // At most `size` chains are outstanding, so a round-robin of 2 * size stamp
                    // slots is never rewritten while the device may still read it.
                    ulong slot = RingPair.BufferBase + ((ulong)(produced % (2 * size)) * 8);
                    ring.Memory.TryWriteUInt64(slot, (ulong)produced);
                    one[0] = new DriverBuffer(slot, 8, DeviceWritable: false);
                    ring.Driver.TryAdd(one, out _);
                    produced++;
                    added++;
                }

                if (added > 0)
                {
                    ring.Driver.Publish();
                    if (ring.Driver.NeedsKick())
                    {
                        Interlocked.Increment(ref doorbell);
                    }
                }

                int got = 0;
                UsedBufferStatus status;
                while ((status = ring.Driver.TryGetUsed(out _)) == UsedBufferStatus.Ok)
                {
                    got++;
                }

                if (status != UsedBufferStatus.Empty)
                {
                    driverError = status;
                    break;
                }

                reaped += got;
                if (got == 0 && added == 0)
                {
                    // Ring full or done producing: wait for an interrupt, re-checking after arming.
                    if (!ring.Driver.EnableInterrupts())
                    {
                        var spin = default(SpinWait);
                        while (Volatile.Read(ref interrupts) == lastInterrupt && deadline.Elapsed < s_deadline)
                        {
                            spin.SpinOnce(sleep1Threshold: -1);
                        }
                    }

                    ring.Driver.DisableInterrupts();
                    lastInterrupt = Volatile.Read(ref interrupts);
                }
            }
        }) { IsBackground = true, Name = "driver" };

        device.Start();
        driver.Start();
        Assert.That(driver.Join(s_deadline + TimeSpan.FromSeconds(10)), Is.True, "driver thread finished");
        Assert.That(device.Join(TimeSpan.FromSeconds(10)), Is.True, "device thread finished");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(deviceError, Is.EqualTo(VirtqueueStatus.Ok));
            Assert.That(driverError, Is.EqualTo(UsedBufferStatus.Ok));
            Assert.That(Volatile.Read(ref deviceSeen), Is.EqualTo(Chains), $"device saw every chain (elapsed {deadline.Elapsed})");
            Assert.That(outOfOrder, Is.Zero, "every sequence number arrived in order, exactly once");
            Assert.That(reaped, Is.EqualTo(Chains), "driver got every chain back");
            Assert.That(ring.Driver.InFlightCount, Is.Zero);
        }

        TestContext.Out.WriteLine($"{format}: {Chains} chains in {deadline.Elapsed.TotalMilliseconds:F0} ms ({Chains / deadline.Elapsed.TotalSeconds / 1e6:F1} M/s), {interrupts} interrupts, {doorbell} kicks");
    }
}
