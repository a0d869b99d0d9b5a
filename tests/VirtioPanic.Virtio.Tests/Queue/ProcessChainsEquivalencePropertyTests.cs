using CsCheck;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests.Queue;

// ProcessChains has its own inlined copy of the pop fast paths (for speed); these properties pin
// it to TryPopChain + AddUsed: on identical random ring memory both must hand out the same chains,
// stop with the same status, and leave the same bytes in guest memory.
public sealed class ProcessChainsEquivalencePropertyTests
{
    [TestCase(VirtqueueFormat.Split)]
    [TestCase(VirtqueueFormat.Packed)]
    public void Property_ProcessChainsMatchesTryPopChain_OnRandomRingMemory(VirtqueueFormat format)
    {
        bool split = format == VirtqueueFormat.Split;
        Func<byte[], int, int, RandomRingMemory> build = split ? RandomRingMemory.Split : RandomRingMemory.Packed;
        int chains = 0;
        int multi = 0;
        Gen.Select(Gen.Byte.Array[split ? RandomRingMemory.SplitNoiseBytes : RandomRingMemory.PackedNoiseBytes], Gen.Int[0, int.MaxValue], Gen.Int[0, 7]).Sample((noise, seed, bits) =>
        {
            (string Log, VirtqueueStatus Status, byte[] Ring) one = Run(build(noise, seed, bits), batch: false);
            (string Log, VirtqueueStatus Status, byte[] Ring) batch = Run(build(noise, seed, bits), batch: true);
            Assert.That(batch.Log, Is.EqualTo(one.Log));
            Assert.That(batch.Status, Is.EqualTo(one.Status));
            Assert.That(batch.Ring, Is.EqualTo(one.Ring), "same completions in guest memory (used ring and index, or used descriptors)");
            Interlocked.Add(ref chains, one.Log.Count(c => c == '\n'));
            Interlocked.Add(ref multi, one.Log.Split('\n').Count(line => line.Count(c => c == '+') > 1));
        }, iter: 600);

        // Seen: about 150 chains, 20–35 of them with several buffers; the bounds leave room for chance.
        Assert.That(chains, Is.GreaterThan(50), "the generator reaches real chains");
        Assert.That(multi, Is.GreaterThan(2), "some with several buffers");
    }

    // Pops up to twice the queue size, completing each chain at once, then publishes.
    private static (string Log, VirtqueueStatus Status, byte[] Ring) Run(RandomRingMemory scenario, bool batch)
    {
        using RandomRingMemory owned = scenario;
        GuestMemory memory = scenario.Memory;
        var log = new System.Text.StringBuilder();
        VirtqueueStatus status;
        int budget = 2 * scenario.Queue.Size;
        if (batch)
        {
            var handler = new Recorder { Log = log };
            status = scenario.Queue.ProcessChains(ref handler, budget, out _);
        }
        else
        {
            status = VirtqueueStatus.Ok;
            for (int i = 0; i < budget; i++)
            {
                status = scenario.Queue.TryPopChain(out DescriptorChain chain);
                if (status != VirtqueueStatus.Ok)
                {
                    break;
                }

                Recorder.Append(log, chain);
                Assert.That(scenario.Queue.AddUsed(chain.Token, chain.WritableLength), Is.EqualTo(VirtqueueStatus.Ok));
            }
        }

        scenario.Queue.FlushUsed();
        byte[] ring = new byte[scenario.RingBytes];
        Assert.That(memory.TryRead(scenario.RingAddress, ring), Is.True);
        return (log.ToString(), status, ring);
    }

    private struct Recorder : IDescriptorChainHandler
    {
        internal System.Text.StringBuilder Log;

        public bool Handle(scoped in DescriptorChain chain, out uint writtenLength)
        {
            Append(Log, chain);
            writtenLength = chain.WritableLength;
            return true;
        }

        internal static void Append(System.Text.StringBuilder log, scoped in DescriptorChain chain)
        {
            log.Append($"id {chain.Token.Id}/{chain.Token.SlotCount} r{chain.Readable.Length} {chain.ReadableLength}/{chain.WritableLength}:");
            foreach (GuestMemorySlice buffer in chain.Buffers)
            {
                log.Append($" {buffer.GuestAddress:x}+{buffer.Length}");
            }

            log.Append('\n');
        }
    }
}
