using System.Buffers.Binary;
using System.Diagnostics;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// A driver thread and a device thread share one ring, as a vCPU and a device worker do. The
// driver stamps each chain with a sequence number; the device must see every number exactly once
// and in order, and the driver must get every chain back. Kicks and interrupts go through the
// real suppression logic (EVENT_IDX or flags), so a lost wakeup shows up as a stall.
public sealed class SplitVirtqueueStressTests
{
    private const int Chains = 10_000_000;
    private static readonly TimeSpan s_deadline = TimeSpan.FromMinutes(3);

    [TestCase(true)]
    [TestCase(false)]
    public void CrossThread_TenMillionChains_EverySequenceSeenOnceInOrder(bool eventIndex)
    {
        const ushort size = 256;
        using var ring = new SplitRing(size: size, features: eventIndex ? VirtqueueFeatures.EventIndex : 0);
        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));
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
                VirtqueueStatus status;
                while (batch < 64 && (status = ring.Queue.TryPopChain(out DescriptorChain chain)) == VirtqueueStatus.Ok)
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
                    // Sleep until kicked.
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
            while (reaped < Chains && deadline.Elapsed < s_deadline)
            {
                int added = 0;
                while (produced < Chains && ring.Driver.FreeCount > 0 && added < 64)
                {
                    ring.Driver.TryAdd([SplitRing.Readable(0, 8)], out ushort head);
                    // Each head owns an 8-byte stamp slot; rewrite the descriptor to point at it.
                    ulong slot = SplitRing.BufferBase + ((ulong)head * 8);
                    ring.Driver.WriteDescriptor(head, new VirtqDescriptor(slot, 8, DescriptorFlags.None, 0));
                    ring.Memory.TryWriteUInt64(slot, (ulong)produced);
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
                    // Ring full (or done producing): wait for an interrupt, re-checking after arming.
                    ring.Driver.DisableInterrupts();
                    if (!ring.Driver.EnableInterrupts())
                    {
                        var spin = default(SpinWait);
                        while (Volatile.Read(ref interrupts) == lastInterrupt && deadline.Elapsed < s_deadline)
                        {
                            spin.SpinOnce(sleep1Threshold: -1);
                        }
                    }

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

        TestContext.Out.WriteLine($"{Chains} chains in {deadline.Elapsed.TotalMilliseconds:F0} ms ({Chains / deadline.Elapsed.TotalSeconds / 1e6:F1} M/s), {interrupts} interrupts, {doorbell} kicks");
    }
}
