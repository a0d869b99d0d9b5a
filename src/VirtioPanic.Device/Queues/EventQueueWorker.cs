using System.Buffers.Binary;
using System.Buffers;
using VirtioPanic.Device.Protocol;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Queues;

// eventq (queue 1): posted record buffers (spec/virtio-watchdog.md §6.5).
//
// The driver posts buffers ahead of time and commits one by writing state = COMMITTED and
// notifying. The device pops posted buffers in ring order and holds up to 16 (copies of their
// validated slices; the chain view itself is only valid until the next pop). On each pass it
// reads the 4-byte state of every held buffer (acquire, WDT-DEV-36: see IsCommitted); uncommitted
// ones stay held, so a spurious notification costs at most 16 small reads. A committed one is
// copied once into a pooled buffer, validated there, reported, and completed with a status in its
// writable part.
internal sealed class EventQueueWorker : QueueWorker
{
    private HeldRecord[]? _held;
    private int _heldCount;
    private bool _logTail;

    internal EventQueueWorker(IQueueWorkerHost host)
        : base(WatchdogProtocol.EventQueue, host)
    {
    }

    internal int HeldCount => _heldCount;

    protected override void OnStart()
    {
        _logTail = (Host.NegotiatedFeatures & WatchdogFeatures.LogTail) != 0;
        EnsureHeld();
    }

    // WDT-DEV-23: look at every held buffer, in the order it was made available, before popping.
    // (After a ring error the queue is not touched again, WDT-DEV-32; held records are still
    // reported at the next device reset, DrainAtReset.)
    protected override void BeginRound(Virtqueue queue) => ScanHeld(queue, EnsureHeld());

    // WDT-DEV-24: hold at most 16; the rest stay in the ring.
    protected override bool WantsChain() => _heldCount < EnsureHeld().Length;

    protected override bool Handle(Virtqueue queue, IVirtioDeviceContext context, DescriptorChain chain)
    {
        HeldRecord[] held = EnsureHeld();
        if (chain.Buffers.Length > WatchdogProtocol.MaxRecordBuffers || chain.ReadableLength < WatchdogProtocol.RecordHeaderSize)
        {
            // WDT-DEV-28: this chain can never carry a record.
            RecordError error = chain.Buffers.Length > WatchdogProtocol.MaxRecordBuffers ? RecordError.TooManyBuffers : RecordError.TooShort;
            uint written = WriteStatus(chain.Writable, WatchdogProtocol.RecordStatusMalformed, 0);
            queue.AddUsed(chain.Token, written);
            Host.OnProtocolError(QueueIndex, WatchdogProtocolError.MalformedRecord, RecordParser.Describe(error));
            return true;
        }

        ref HeldRecord slot = ref held[_heldCount++];
        slot.Token = chain.Token;
        slot.Count = chain.Buffers.Length;
        slot.Readable = chain.Readable.Length;
        slot.ReadableLength = chain.ReadableLength;
        chain.Buffers.CopyTo(slot.Buffers);
        ScanHeld(queue, held);
        return true;
    }

    protected override bool Rearm(Virtqueue queue)
    {
        if (_heldCount == EnsureHeld().Length)
        {
            // Full: wait for a commit notification, which the driver sends unconditionally
            // (WDT-DRV-9), before popping more.
            queue.EnableNotification();
            return false;
        }

        return queue.EnableNotification();
    }

    // Device reset (WDT-DEV-30): report committed records the device never saw a notification
    // for, without writing to the buffers, then forget everything held. The worker is stopped.
    internal void DrainAtReset()
    {
        HeldRecord[]? held = _held;
        if (held is not null)
        {
            for (int i = 0; i < _heldCount; i++)
            {
                ref HeldRecord record = ref held[i];
                if (IsCommitted(record))
                {
                    Consume(record, WatchdogEventSource.EventRecordAtReset, out _);
                }
            }

            ClearHeld(held);
        }
    }

    // Suspend (WDT-DEV-39): committed records are consumed and completed as a pass would, the
    // rest stay held for SaveHeld.
    protected override void OnSuspend(Virtqueue queue, IVirtioDeviceContext context)
    {
        if (_held is null)
        {
            return;
        }

        ScanHeld(queue, _held);
        Flush(queue, context);
    }

    internal void ClearHeld()
    {
        if (_held is not null)
        {
            ClearHeld(_held);
        }
    }

    internal HeldRecordState[] SaveHeld()
    {
        HeldRecord[]? held = _held;
        if (held is null || _heldCount == 0)
        {
            return [];
        }

        var saved = new HeldRecordState[_heldCount];
        for (int i = 0; i < _heldCount; i++)
        {
            ref HeldRecord record = ref held[i];
            var buffers = new HeldBufferState[record.Count];
            for (int b = 0; b < record.Count; b++)
            {
                buffers[b] = new HeldBufferState(record.Buffers[b].GuestAddress, record.Buffers[b].Length);
            }

            saved[i] = new HeldRecordState(record.Token, record.Readable, buffers);
        }

        return saved;
    }

    // Re-translates saved buffers (untrusted input) into held slots; returns how many were lost.
    internal int RestoreHeld(GuestMemory memory, ReadOnlySpan<HeldRecordState> saved)
    {
        HeldRecord[] held = EnsureHeld();
        ClearHeld(held);
        int lost = 0;
        foreach (HeldRecordState state in saved)
        {
            if (_heldCount == held.Length || state.Buffers.Length is 0 or > WatchdogProtocol.MaxRecordBuffers || state.Readable > state.Buffers.Length)
            {
                lost++;
                continue;
            }

            ref HeldRecord slot = ref held[_heldCount];
            bool ok = true;
            ulong readableLength = 0;
            for (int b = 0; b < state.Buffers.Length && ok; b++)
            {
                HeldBufferState buffer = state.Buffers[b];
                ok = buffer.Length != 0 && memory.TryGetSlice(buffer.Address, buffer.Length, out slot.Buffers[b]) == GuestMemoryStatus.Ok;
                if (b < state.Readable)
                {
                    readableLength += buffer.Length;
                }
            }

            if (!ok || readableLength < WatchdogProtocol.RecordHeaderSize || readableLength > uint.MaxValue)
            {
                Array.Clear(slot.Buffers);
                lost++;
                continue;
            }

            slot.Token = state.Token;
            slot.Count = state.Buffers.Length;
            slot.Readable = state.Readable;
            slot.ReadableLength = (uint)readableLength;
            _heldCount++;
        }

        return lost;
    }

    // WDT-DEV-36: the state word is read with acquire semantics, and only then the body (Consume).
    // Pairs with the driver's write barrier (Linux: virtio_wmb) or release store (the C# harness:
    // WatchdogDriver.Commit, StoreUInt32Release) between writing the record and storing COMMITTED:
    // a scan that sees COMMITTED sees the whole record the driver wrote before it. Without the
    // acquire a weakly ordered host (ARM64) may satisfy the body loads before the state load and
    // copy a stale body. Usually the state lies in the first readable buffer (one acquire load, or
    // a load and a full fence when the guest put it at an odd address); a state split over several
    // descriptors is gathered with plain loads and then fenced, which orders it just the same.
    private static bool IsCommitted(in HeldRecord record)
    {
        ReadOnlySpan<GuestMemorySlice> readable = record.ReadableBuffers;
        uint state;
        if (readable[0].Length >= sizeof(uint))
        {
            state = readable[0].LoadUInt32Acquire(WatchdogProtocol.RecordState);
        }
        else
        {
            Span<byte> bytes = stackalloc byte[sizeof(uint)];
            if (ScatterGather.Gather(readable, bytes, 0) != bytes.Length)
            {
                return false;
            }

            Interlocked.MemoryBarrier();
            state = BinaryPrimitives.ReadUInt32LittleEndian(bytes);
        }

        return state == WatchdogProtocol.RecordCommitted;
    }

    private static uint WriteStatus(ReadOnlySpan<GuestMemorySlice> writable, byte status, long hostSequence)
    {
        Span<byte> encoded = stackalloc byte[WatchdogProtocol.RecordStatusSize];
        encoded.Clear();
        encoded[WatchdogProtocol.RecordStatusCode] = status;
        BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.RecordStatusHostSequence..], unchecked((uint)hostSequence));
        return (uint)ScatterGather.Scatter(writable, encoded, 0);
    }

    private HeldRecord[] EnsureHeld()
    {
        if (_held is null)
        {
            var held = new HeldRecord[WatchdogProtocol.MaxPostedRecords];
            for (int i = 0; i < held.Length; i++)
            {
                held[i].Buffers = new GuestMemorySlice[WatchdogProtocol.MaxRecordBuffers];
            }

            _held = held;
        }

        return _held;
    }

    private void ClearHeld(HeldRecord[] held)
    {
        for (int i = 0; i < _heldCount; i++)
        {
            Array.Clear(held[i].Buffers);
            held[i].Count = 0;
        }

        _heldCount = 0;
    }

    private void ScanHeld(Virtqueue queue, HeldRecord[] held)
    {
        int kept = 0;
        for (int i = 0; i < _heldCount; i++)
        {
            ref HeldRecord record = ref held[i];
            if (IsCommitted(record) && Consume(record, WatchdogEventSource.EventRecord, out byte status) is long sequence)
            {
                // WDT-DEV-25: only the writable part is written; used length = bytes written.
                uint written = WriteStatus(record.WritableBuffers, status, sequence);
                queue.AddUsed(record.Token, written);
                Array.Clear(record.Buffers);
                continue;
            }

            if (kept != i)
            {
                // Keep ring order: move the slot down, swapping buffer arrays so none is shared.
                (held[kept], held[i]) = (held[i], held[kept]);
            }

            kept++;
        }

        _heldCount = kept;
    }

    // Copies the record once, validates the copy and reports it. Returns the host event sequence
    // (0 when no event was made), or null when the copy shows the record is not committed after all
    // (the guest rewrote it between the two reads): then it stays held.
    private long? Consume(in HeldRecord record, WatchdogEventSource source, out byte status)
    {
        int length = (int)Math.Min(record.ReadableLength, (uint)WatchdogProtocol.RecordMax);
        byte[] rented = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            Span<byte> copy = rented.AsSpan(0, ScatterGather.Gather(record.ReadableBuffers, rented.AsSpan(0, length), 0));
            if (copy.Length < sizeof(uint) || BinaryPrimitives.ReadUInt32LittleEndian(copy) != WatchdogProtocol.RecordCommitted)
            {
                status = WatchdogProtocol.RecordStatusPending;
                return null;
            }

            RecordError error = RecordParser.Parse(copy, record.ReadableLength, _logTail, out RecordHeader header);
            if (error == RecordError.None)
            {
                status = WatchdogProtocol.RecordStatusAccepted;
                return Host.OnRecord(header, copy, source);
            }

            // WDT-DEV-27: typed protocol error, no DEVICE_NEEDS_RESET.
            bool unsupported = error == RecordError.UnknownType;
            status = unsupported ? WatchdogProtocol.RecordStatusUnsupported : WatchdogProtocol.RecordStatusMalformed;
            Host.OnProtocolError(
                QueueIndex,
                unsupported ? WatchdogProtocolError.UnsupportedRecordType : WatchdogProtocolError.MalformedRecord,
                RecordParser.Describe(error),
                header.Type);
            return 0;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }
}
