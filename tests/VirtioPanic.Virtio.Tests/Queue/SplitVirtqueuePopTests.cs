using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// Well-formed chains: what the device sees is exactly what the driver built.
public sealed class SplitVirtqueuePopTests
{
    [Test]
    public void TryPopChain_EmptyRing_ReturnsEmpty()
    {
        using var ring = new SplitRing();
        ring.Activate();

        Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Empty));
    }

    [Test]
    public void TryPopChain_AddedButNotPublished_ReturnsEmpty()
    {
        using var ring = new SplitRing();
        ring.Activate();
        ring.Add(SplitRing.Writable(0, 8));

        Assert.That(ring.Queue.TryPopChain(out _), Is.EqualTo(VirtqueueStatus.Empty));
    }

    [Test]
    public void TryPopChain_SingleWritableBuffer_HandsOutThatBuffer()
    {
        using var ring = new SplitRing();
        ring.Activate();
        ushort head = ring.AddAndPublish(SplitRing.Writable(0x40, 24));

        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(chain.Token.Id, Is.EqualTo(head));
            Assert.That(chain.Readable.Length, Is.Zero);
            Assert.That(chain.Writable.Length, Is.EqualTo(1));
            Assert.That(chain.Writable[0].GuestAddress, Is.EqualTo(SplitRing.BufferBase + 0x40));
            Assert.That(chain.WritableLength, Is.EqualTo(24u));
            Assert.That(chain.ReadableLength, Is.Zero);
        }
    }

    [Test]
    public void TryPopChain_ReadReadWrite_SplitsReadableFromWritableInOrder()
    {
        using var ring = new SplitRing();
        ring.Activate();
        ushort head = ring.AddAndPublish(SplitRing.Readable(0, 16), SplitRing.Readable(0x100, 4), SplitRing.Writable(0x200, 64));

        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(chain.Token.Id, Is.EqualTo(head));
            Assert.That(chain.Readable.Length, Is.EqualTo(2));
            Assert.That(chain.Readable[0].GuestAddress, Is.EqualTo(SplitRing.BufferBase));
            Assert.That(chain.Readable[1].GuestAddress, Is.EqualTo(SplitRing.BufferBase + 0x100));
            Assert.That(chain.Writable[0].GuestAddress, Is.EqualTo(SplitRing.BufferBase + 0x200));
            Assert.That(chain.ReadableLength, Is.EqualTo(20u));
            Assert.That(chain.WritableLength, Is.EqualTo(64u));
        }
    }

    [Test]
    public void CopyFromReadable_AcrossBuffers_GathersInChainOrder()
    {
        using var ring = new SplitRing();
        ring.Activate();
        ring.Memory.TryWrite(SplitRing.BufferBase, [1, 2, 3]);
        ring.Memory.TryWrite(SplitRing.BufferBase + 0x100, [4, 5]);
        ring.AddAndPublish(SplitRing.Readable(0, 3), SplitRing.Readable(0x100, 2), SplitRing.Writable(0x200, 4));
        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));

        byte[] all = new byte[8];
        int copied = chain.CopyFromReadable(all);
        byte[] tail = new byte[3];
        int copiedTail = chain.CopyFromReadable(tail, offset: 2);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(copied, Is.EqualTo(5));
            Assert.That(all[..5], Is.EqualTo(new byte[] { 1, 2, 3, 4, 5 }));
            Assert.That(copiedTail, Is.EqualTo(3));
            Assert.That(tail, Is.EqualTo(new byte[] { 3, 4, 5 }));
        }
    }

    [Test]
    public void CopyToWritable_AcrossBuffers_ScattersAndStopsAtTheEnd()
    {
        using var ring = new SplitRing();
        ring.Activate();
        ring.AddAndPublish(SplitRing.Writable(0, 2), SplitRing.Writable(0x100, 3));
        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));

        int written = chain.CopyToWritable([9, 8, 7, 6, 5, 4]);

        byte[] first = new byte[2];
        byte[] second = new byte[3];
        ring.Memory.TryRead(SplitRing.BufferBase, first);
        ring.Memory.TryRead(SplitRing.BufferBase + 0x100, second);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(written, Is.EqualTo(5));
            Assert.That(first, Is.EqualTo(new byte[] { 9, 8 }));
            Assert.That(second, Is.EqualTo(new byte[] { 7, 6, 5 }));
        }
    }

    [Test]
    public void TryPopChain_IndirectTableOfThree_HandsOutTheTablesBuffers()
    {
        using var ring = new SplitRing(features: VirtqueueFeatures.IndirectDescriptors);
        ring.Activate();
        Assert.That(ring.Driver.TryAddIndirect([SplitRing.Readable(0, 16), SplitRing.Readable(0x100, 16), SplitRing.Writable(0x200, 32)], out ushort head), Is.True);
        ring.Driver.Publish();

        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(chain.Token.Id, Is.EqualTo(head));
            Assert.That(chain.Readable.Length, Is.EqualTo(2));
            Assert.That(chain.Writable.Length, Is.EqualTo(1));
            Assert.That(chain.Writable[0].GuestAddress, Is.EqualTo(SplitRing.BufferBase + 0x200));
            Assert.That(chain.ReadableLength, Is.EqualTo(32u));
        }
    }

    [Test]
    public void TryPopChain_DirectDescriptorsThenFinalIndirect_IsAccepted()
    {
        // virtio 1.2 §2.7.5.3.2: the device MUST handle zero or more normal chained descriptors
        // followed by a single INDIRECT one. WRITE on the INDIRECT descriptor itself is ignored.
        using var ring = new SplitRing(features: VirtqueueFeatures.IndirectDescriptors);
        ring.Activate();
        SplitVirtqueueValidationTests.WriteIndirectTable(ring, 0x1000, SplitRing.Readable(0x300, 8), SplitRing.Writable(0x400, 8));
        ring.Driver.WriteDescriptor(0, new VirtqDescriptor(SplitRing.BufferBase, 4, DescriptorFlags.Next, 1));
        ring.Driver.WriteDescriptor(1, new VirtqDescriptor(SplitRing.BufferBase + 0x1000, 32, DescriptorFlags.Indirect | DescriptorFlags.Write, 0));
        ring.PublishRawHead(0);

        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(chain.Readable.Length, Is.EqualTo(2));
            Assert.That(chain.Readable[1].GuestAddress, Is.EqualTo(SplitRing.BufferBase + 0x300));
            Assert.That(chain.Writable.Length, Is.EqualTo(1));
            Assert.That(chain.WritableLength, Is.EqualTo(8u));
        }
    }

    [Test]
    public void TryPopChain_ChainOfExactlyQueueSize_IsAccepted()
    {
        const ushort size = 8;
        using var ring = new SplitRing(size: size);
        ring.Activate();
        DriverBuffer[] buffers = [.. Enumerable.Range(0, size).Select(i => SplitRing.Readable((ulong)i * 16, 16))];
        ring.AddAndPublish(buffers);

        Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
        Assert.That(chain.Buffers.Length, Is.EqualTo(size));
    }

    [Test]
    public void Pop_LargestQueueSize_TwoFullRingsRoundTrip()
    {
        const ushort size = SplitRingLayout.MaxQueueSize;
        var memory = GuestMemory.CreateAnonymous(64UL << 20);
        using var ring = new SplitRing(size: size, memory: memory, maxIndirect: 0);
        Assert.That(ring.Activate(), Is.EqualTo(VirtqueueStatus.Ok));

        for (int round = 0; round < 2; round++)
        {
            for (int i = 0; i < size; i++)
            {
                ring.Add(SplitRing.Writable((ulong)i * 8, 8));
            }

            ring.Driver.Publish();
            int popped = 0;
            while (ring.Queue.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok)
            {
                Assert.That(ring.Queue.AddUsed(chain.Token, 8), Is.EqualTo(VirtqueueStatus.Ok));
                popped++;
            }

            ring.Queue.FlushUsed();
            int reaped = 0;
            while (ring.Driver.TryGetUsed(out _) == UsedBufferStatus.Ok)
            {
                reaped++;
            }

            Assert.That((popped, reaped, ring.Queue.Status), Is.EqualTo((size, size, VirtqueueStatus.Ok)));
        }
    }

    [Test]
    public void Pop_IndicesWrapPast65535_EveryChainRoundTripsInOrder()
    {
        using var ring = new SplitRing(size: 8);
        ring.Driver.StartAt(65530);
        VirtqueueStatus restored = ring.Queue.RestoreState(ring.Memory, new VirtqueueState
        {
            Format = VirtqueueFormat.Split,
            Ready = true,
            Config = ring.Driver.Config,
            NextAvail = 65530,
            NextUsed = 65530,
        });
        Assert.That(restored, Is.EqualTo(VirtqueueStatus.Ok));

        var expected = new List<ushort>();
        var seen = new List<ushort>();
        for (int i = 0; i < 20; i++)
        {
            expected.Add(ring.AddAndPublish(SplitRing.Writable((ulong)i * 8, 8)));
            Assert.That(ring.Queue.TryPopChain(out DescriptorChain chain), Is.EqualTo(VirtqueueStatus.Ok));
            seen.Add(chain.Token.Id);
            ring.Queue.AddUsed(chain.Token, (uint)i);
            ring.Queue.FlushUsed();
            Assert.That(ring.Driver.TryGetUsed(out UsedBuffer used), Is.EqualTo(UsedBufferStatus.Ok));
            Assert.That(used, Is.EqualTo(new UsedBuffer(chain.Token.Id, (uint)i)));
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(seen, Is.EqualTo(expected));
            Assert.That(ring.Driver.LoadUsedIndex(), Is.EqualTo(unchecked((ushort)(65530 + 20))));
        }
    }
}
