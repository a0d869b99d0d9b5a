using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Fuzz.Targets;

// The device's side of a queue session, one op byte at a time (bits 0-3 the op, bits 4-7 its
// argument):
//   0 pop one chain; argument bit 0: keep it (complete later), else complete it now
//   1 ProcessChains with a budget of argument + 1
//   2 FlushUsed                    3 EnableNotification     4 DisableNotification
//   5 complete the oldest kept chain; argument bit 0: a forged token (u16 id, u16 slots) instead
//   6 guest write: u16 offset, u16 value into region 0
//   7 SaveState then RestoreState (and RestoreInFlight for the kept chains): must succeed
//   8 Reset, then Activate with the same configuration
//   anything else: nothing
internal sealed class VirtqueueOps
{
    private readonly Virtqueue _queue;
    private readonly FuzzGuestMemory _guest;
    private readonly ChainToken[] _kept = new ChainToken[512];
    private int _keptCount;
    private readonly byte[] _scratch = new byte[512];

    internal VirtqueueOps(Virtqueue queue, FuzzGuestMemory guest)
    {
        _queue = queue;
        _guest = guest;
    }

    internal void Run(ref FuzzInput reader, VirtqueueConfig config, VirtqueueFeatures features)
    {
        int steps = 0;
        while (!reader.IsEmpty && steps++ < 4096)
        {
            byte op = reader.U8();
            int argument = op >> 4;
            switch (op & 0x0F)
            {
                case 0:
                    Pop((argument & 1) != 0);
                    break;
                case 1:
                    var handler = new CheckingHandler(_guest.Memory, _queue.MaxChainLength, _scratch);
                    VirtqueueStatus status = _queue.ProcessChains(ref handler, argument + 1, out int processed);
                    Check.That(processed <= argument + 1, "ProcessChains handled more chains than its budget");
                    Check.That(processed == handler.Handled, "ProcessChains reported a count different from the chains it handed out");
                    Check.That(status != VirtqueueStatus.Ok || processed == argument + 1, "ProcessChains returned Ok before its budget ran out");
                    break;
                case 2:
                    _ = _queue.FlushUsed();
                    break;
                case 3:
                    _ = _queue.EnableNotification();
                    break;
                case 4:
                    _queue.DisableNotification();
                    break;
                case 5:
                    CompleteKept((argument & 1) != 0 ? new ChainToken(reader.U16(), reader.U16()) : null);
                    break;
                case 6:
                    _guest.GuestWrite(reader.U16(), reader.U16());
                    break;
                case 7:
                    SaveAndRestore();
                    break;
                case 8:
                    _queue.Reset();
                    _keptCount = 0;
                    if (_queue.Activate(_guest.Memory, config, features) != VirtqueueStatus.Ok)
                    {
                        return;
                    }

                    break;
                default:
                    break;
            }
        }
    }

    private void Pop(bool keep)
    {
        VirtqueueStatus status = _queue.TryPopChain(out DescriptorChain chain);
        if (status != VirtqueueStatus.Ok)
        {
            Check.That(_queue.Status == status || status == VirtqueueStatus.Empty, "TryPopChain returned an error the queue does not report");
            return;
        }

        uint written = CheckingHandler.Exercise(chain, _guest.Memory, _queue.MaxChainLength, _scratch);
        if (keep && _keptCount < _kept.Length)
        {
            _kept[_keptCount++] = chain.Token;
        }
        else
        {
            _ = _queue.AddUsed(chain.Token, written);
        }
    }

    private void CompleteKept(ChainToken? forged)
    {
        if (forged is { } token)
        {
            _ = _queue.AddUsed(token, 0);
            return;
        }

        if (_keptCount == 0)
        {
            return;
        }

        _ = _queue.AddUsed(_kept[0], 0);
        Array.Copy(_kept, 1, _kept, 0, --_keptCount);
    }

    private void SaveAndRestore()
    {
        VirtqueueState saved = _queue.SaveState();
        VirtqueueStatus status = _queue.RestoreState(_guest.Memory, saved);
        if (!(status == VirtqueueStatus.Ok))
        {
            throw Check.Violation($"RestoreState refused the state SaveState just returned: {status} for {saved}");
        }
        for (int i = 0; i < _keptCount; i++)
        {
            _queue.RestoreInFlight(_kept[i]);
        }
    }

    // Checks and touches every chain: the readable and writable lengths add up, the chain is no
    // longer than the queue allows, and every buffer is inside guest memory (the guard pages
    // catch a host access that is not).
    private struct CheckingHandler : IDescriptorChainHandler
    {
        private readonly GuestMemory _memory;
        private readonly int _maxChainLength;
        private readonly byte[] _scratch;

        internal CheckingHandler(GuestMemory memory, int maxChainLength, byte[] scratch)
        {
            _memory = memory;
            _maxChainLength = maxChainLength;
            _scratch = scratch;
            Handled = 0;
        }

        internal int Handled { get; private set; }

        public bool Handle(scoped in DescriptorChain chain, out uint writtenLength)
        {
            Handled++;
            writtenLength = Exercise(chain, _memory, _maxChainLength, _scratch);
            return (Handled & 3) != 3;
        }

        internal static uint Exercise(scoped in DescriptorChain chain, GuestMemory memory, int maxChainLength, byte[] scratch)
        {
            ReadOnlySpan<GuestMemorySlice> buffers = chain.Buffers;
            if (!(buffers.Length is > 0 && buffers.Length <= maxChainLength))
            {
                throw Check.Violation($"a chain of {buffers.Length} buffers (limit {maxChainLength})");
            }
            Check.That(chain.Readable.Length + chain.Writable.Length == buffers.Length, "readable and writable buffers do not add up to the chain");
            ulong readable = 0;
            foreach (GuestMemorySlice slice in chain.Readable)
            {
                CheckInside(memory, slice);
                readable += slice.Length;
            }

            ulong writable = 0;
            foreach (GuestMemorySlice slice in chain.Writable)
            {
                CheckInside(memory, slice);
                writable += slice.Length;
            }

            if (!(readable == chain.ReadableLength))
            {
                throw Check.Violation($"ReadableLength {chain.ReadableLength}, buffers hold {readable}");
            }
            if (!(writable == chain.WritableLength))
            {
                throw Check.Violation($"WritableLength {chain.WritableLength}, buffers hold {writable}");
            }
            int copied = chain.CopyFromReadable(scratch);
            Check.That(copied == (int)Math.Min(readable, (ulong)scratch.Length), "CopyFromReadable copied the wrong amount");
            return (uint)chain.CopyToWritable(scratch.AsSpan(0, copied));
        }

        private static void CheckInside(GuestMemory memory, GuestMemorySlice slice)
        {
            if (!(memory.CheckRange(slice.GuestAddress, slice.Length) == GuestMemoryStatus.Ok))
            {
                throw Check.Violation($"a buffer outside guest memory: 0x{slice.GuestAddress:x} + {slice.Length}");
            }
            Span<byte> bytes = slice.Span;
            if (!bytes.IsEmpty)
            {
                bytes[^1] ^= 0;   // touch the last byte through the host mapping
            }
        }
    }
}
