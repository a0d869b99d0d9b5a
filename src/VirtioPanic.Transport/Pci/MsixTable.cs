using System.Buffers.Binary;
using System.Diagnostics;
using VirtioPanic.Snapshots;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Transport.Pci;

// The MSI-X table, pending-bit array and the enable / function-mask state of one function
// (PCI Local Bus 3.0 §6.8.2; virtio 1.2 §4.1.5.1.2).
//
// Layout inside its BAR: table at TableOffset (16 bytes per vector), PBA at PbaOffset (one bit
// per vector in 64-bit words). Both accept aligned 4- and 8-byte accesses; the PBA is read-only.
//
// Threading: its own lock (a separate owner from the PCI function): device workers signal vectors
// concurrently with vCPUs programming the table, and must never wait for the function's control
// lock. A message is captured under the lock and sent after it is released. Delivery rules:
//   MSI-X disabled           -> nothing here (the caller uses INTx)
//   vector or function masked, or bus mastering off -> the pending bit is set
//   otherwise                -> the message is sent
// Clearing a mask (or enabling bus mastering) sends every pending message that became deliverable
// and clears its pending bit.
internal sealed class MsixTable
{
    private readonly Lock _lock = new();
    private readonly IInterruptSink _sink;
    private readonly uint[] _entries;    // 4 dwords per vector: address low, address high, data, control
    private readonly ulong[] _pending;
    private volatile bool _enabled;
    private bool _functionMasked;
    private bool _busMaster;

    internal MsixTable(IInterruptSink sink, int vectorCount)
    {
        Debug.Assert(vectorCount is >= 1 and <= 2048);
        _sink = sink;
        VectorCount = vectorCount;
        _entries = new uint[vectorCount * 4];
        _pending = new ulong[(vectorCount + 63) / 64];
        Reset();
    }

    internal int VectorCount { get; }

    internal int TableLength => VectorCount * MsixRegisters.EntrySize;

    internal int PbaLength => _pending.Length * 8;

    // Read lock-free by the interrupt router to choose between MSI-X and INTx.
    internal bool Enabled => _enabled;

    internal ushort MessageControl
    {
        get
        {
            lock (_lock)
            {
                return MessageControlUnsynchronized();
            }
        }
    }

    // Power-on state: disabled, unmasked function, every vector masked, nothing pending.
    internal void Reset()
    {
        lock (_lock)
        {
            _enabled = false;
            _functionMasked = false;
            _busMaster = false;
            Array.Clear(_entries);
            Array.Clear(_pending);
            for (int i = 0; i < VectorCount; i++)
            {
                _entries[(i * 4) + 3] = MsixRegisters.VectorMasked;
            }
        }
    }

    internal void WriteMessageControl(ushort value)
    {
        lock (_lock)
        {
            _enabled = (value & MsixRegisters.Enable) != 0;
            _functionMasked = (value & MsixRegisters.FunctionMask) != 0;
        }

        DeliverPending();
    }

    internal void SetBusMaster(bool enabled)
    {
        lock (_lock)
        {
            _busMaster = enabled;
        }

        DeliverPending();
    }

    // Signals one vector. Out-of-range vectors and NO_VECTOR are ignored (§4.1.5.3.1: with
    // NO_VECTOR mapped the device MUST NOT interrupt).
    internal void Signal(int vector)
    {
        ulong address;
        uint data;
        lock (_lock)
        {
            if ((uint)vector >= (uint)VectorCount || !_enabled)
            {
                return;
            }

            if (!DeliverableUnsynchronized(vector))
            {
                _pending[vector >> 6] |= 1UL << (vector & 63);
                return;
            }

            address = Address(vector);
            data = _entries[(vector * 4) + 2];
        }

        _sink.SignalMsi(address, data);
    }

    internal bool IsPending(int vector)
    {
        lock (_lock)
        {
            return (uint)vector < (uint)VectorCount && (_pending[vector >> 6] & (1UL << (vector & 63))) != 0;
        }
    }

    internal InvalidAccessKind ReadTable(ulong offset, Span<byte> data)
    {
        InvalidAccessKind kind = CheckAccess(offset, data.Length, (ulong)TableLength);
        if (kind != InvalidAccessKind.None)
        {
            data.Clear();
            return kind;
        }

        lock (_lock)
        {
            int dword = (int)(offset >> 2);
            BinaryPrimitives.WriteUInt32LittleEndian(data, _entries[dword]);
            if (data.Length == 8)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(data[4..], _entries[dword + 1]);
            }
        }

        return InvalidAccessKind.None;
    }

    internal InvalidAccessKind WriteTable(ulong offset, ReadOnlySpan<byte> data)
    {
        InvalidAccessKind kind = CheckAccess(offset, data.Length, (ulong)TableLength);
        if (kind != InvalidAccessKind.None)
        {
            return kind;
        }

        lock (_lock)
        {
            int dword = (int)(offset >> 2);
            WriteDwordUnsynchronized(dword, BinaryPrimitives.ReadUInt32LittleEndian(data));
            if (data.Length == 8)
            {
                WriteDwordUnsynchronized(dword + 1, BinaryPrimitives.ReadUInt32LittleEndian(data[4..]));
            }
        }

        // Unmasking a vector with its pending bit set sends the message now.
        DeliverPending();
        return InvalidAccessKind.None;
    }

    internal InvalidAccessKind ReadPba(ulong offset, Span<byte> data)
    {
        InvalidAccessKind kind = CheckAccess(offset, data.Length, (ulong)PbaLength);
        if (kind != InvalidAccessKind.None)
        {
            data.Clear();
            return kind;
        }

        ulong word;
        lock (_lock)
        {
            word = _pending[offset >> 3];
        }

        if (data.Length == 8)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(data, word);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data, (uint)(word >> (int)((offset & 4) * 8)));
        }

        return InvalidAccessKind.None;
    }

    internal InvalidAccessKind CheckPbaWrite(ulong offset, int length)
    {
        InvalidAccessKind kind = CheckAccess(offset, length, (ulong)PbaLength);
        return kind == InvalidAccessKind.None ? InvalidAccessKind.ReadOnly : kind;
    }

    internal void Save(SnapshotWriter writer)
    {
        lock (_lock)
        {
            writer.WriteUInt16((ushort)VectorCount);
            writer.WriteByte((byte)((_enabled ? 1 : 0) | (_functionMasked ? 2 : 0) | (_busMaster ? 4 : 0)));
            foreach (uint entry in _entries)
            {
                writer.WriteUInt32(entry);
            }

            foreach (ulong word in _pending)
            {
                writer.WriteUInt64(word);
            }
        }
    }

    // Parses and validates a saved table without applying it.
    internal SnapshotStatus Parse(ref SnapshotReader reader, out MsixSavedState state)
    {
        state = default;
        ushort count = reader.ReadUInt16();
        byte flags = reader.ReadByte();
        if (reader.Failed)
        {
            return SnapshotStatus.Malformed;
        }

        if (count != VectorCount)
        {
            return SnapshotStatus.DeviceMismatch;
        }

        var entries = new uint[_entries.Length];
        for (int i = 0; i < entries.Length; i++)
        {
            entries[i] = reader.ReadUInt32();
        }

        var pending = new ulong[_pending.Length];
        for (int i = 0; i < pending.Length; i++)
        {
            pending[i] = reader.ReadUInt64();
        }

        if (reader.Failed)
        {
            return SnapshotStatus.Malformed;
        }

        if ((flags & ~7) != 0)
        {
            return SnapshotStatus.InvalidState;
        }

        for (int i = 0; i < VectorCount; i++)
        {
            if ((entries[(i * 4) + 3] & ~MsixRegisters.VectorMasked) != 0)
            {
                return SnapshotStatus.InvalidState;   // reserved vector-control bits are read-only zero
            }
        }

        int tail = VectorCount & 63;
        if (tail != 0 && (pending[^1] >> tail) != 0)
        {
            return SnapshotStatus.InvalidState;       // pending bits for vectors that do not exist
        }

        state = new MsixSavedState(flags, entries, pending);
        return SnapshotStatus.Ok;
    }

    internal void Apply(MsixSavedState state)
    {
        lock (_lock)
        {
            _enabled = (state.Flags & 1) != 0;
            _functionMasked = (state.Flags & 2) != 0;
            _busMaster = (state.Flags & 4) != 0;
            state.Entries.CopyTo(_entries, 0);
            state.Pending.CopyTo(_pending, 0);
        }
    }

    // Sends every pending message whose vector is now deliverable, one at a time so that no
    // message is sent with the lock held.
    internal void DeliverPending()
    {
        while (true)
        {
            ulong address;
            uint data;
            lock (_lock)
            {
                int vector = NextDeliverablePendingUnsynchronized();
                if (vector < 0)
                {
                    return;
                }

                _pending[vector >> 6] &= ~(1UL << (vector & 63));
                address = Address(vector);
                data = _entries[(vector * 4) + 2];
            }

            _sink.SignalMsi(address, data);
        }
    }

    private static InvalidAccessKind CheckAccess(ulong offset, int length, ulong regionLength)
    {
        if (length is not (4 or 8))
        {
            return InvalidAccessKind.WrongWidth;
        }

        if ((offset & (ulong)(length - 1)) != 0)
        {
            return InvalidAccessKind.Misaligned;
        }

        return offset + (ulong)length <= regionLength ? InvalidAccessKind.None : InvalidAccessKind.OutOfRange;
    }

    private ushort MessageControlUnsynchronized() =>
        (ushort)((VectorCount - 1) | (_functionMasked ? MsixRegisters.FunctionMask : 0) | (_enabled ? MsixRegisters.Enable : 0));

    private void WriteDwordUnsynchronized(int dword, uint value)
    {
        // Vector control: only the mask bit is writable; the rest is reserved (RO 0).
        _entries[dword] = (dword & 3) == 3 ? value & MsixRegisters.VectorMasked : value;
    }

    private bool DeliverableUnsynchronized(int vector) =>
        _enabled && !_functionMasked && _busMaster && (_entries[(vector * 4) + 3] & MsixRegisters.VectorMasked) == 0;

    private int NextDeliverablePendingUnsynchronized()
    {
        if (!_enabled || _functionMasked || !_busMaster)
        {
            return -1;
        }

        for (int word = 0; word < _pending.Length; word++)
        {
            ulong bits = _pending[word];
            while (bits != 0)
            {
                int vector = (word * 64) + System.Numerics.BitOperations.TrailingZeroCount(bits);
                if (DeliverableUnsynchronized(vector))
                {
                    return vector;
                }

                bits &= bits - 1;
            }
        }

        return -1;
    }

    private ulong Address(int vector) => _entries[vector * 4] | ((ulong)_entries[(vector * 4) + 1] << 32);
}
