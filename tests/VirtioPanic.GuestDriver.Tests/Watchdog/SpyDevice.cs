using System.Buffers.Binary;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Tests.Watchdog;

// Wraps the real device and watches the wire, as a protocol analyser would: the feature sets the
// driver accepts, every configuration access, every notification (with its machine time), and
// every chain the driver makes available on a split ring, decoded from guest memory with the
// bytes of its buffers as they were when the device was told about them (at DRIVER_OK or at the
// notification). It can also hold or swallow notifications, and corrupt heartbeat answers.
internal sealed class SpyDevice : IVirtioDevice
{
    private readonly IVirtioDevice _inner;
    private readonly TimeProvider _clock;
    private readonly Lock _lock = new();
    private readonly ushort[] _seen = new ushort[3];
    private readonly Queue<int> _held = new();
    private IVirtioDeviceContext? _context;

    internal SpyDevice(IVirtioDevice inner, TimeProvider clock)
    {
        _inner = inner;
        _clock = clock;
    }

    public uint DeviceId => _inner.DeviceId;

    public ulong DeviceFeatures => _inner.DeviceFeatures;

    public int QueueCount => _inner.QueueCount;

    public int ConfigSize => _inner.ConfigSize;

    internal List<ulong> AcceptedFeatures { get; } = [];

    internal List<ConfigAccess> ConfigAccesses { get; } = [];

    internal List<ObservedChain> Chains { get; } = [];

    internal List<(int Queue, DateTimeOffset Time, byte[][] Records)> Notifications { get; } = [];

    internal bool HoldWatchdogQueue { get; set; }

    internal bool SwallowEventQueue { get; set; }

    internal bool CorruptHeartbeats { get; set; }

    internal IEnumerable<ObservedChain> ChainsOn(int queue) => Chains.Where(c => c.Queue == queue);

    internal int NotifyCount(int queue) => Notifications.Count(n => n.Queue == queue);

    public ushort GetMaxQueueSize(int queueIndex) => _inner.GetMaxQueueSize(queueIndex);

    public void ReadConfig(uint offset, Span<byte> data)
    {
        _inner.ReadConfig(offset, data);
        Span<byte> value = stackalloc byte[8];
        value.Clear();
        data.CopyTo(value);
        lock (_lock)
        {
            ConfigAccesses.Add(new ConfigAccess(false, offset, data.Length, BinaryPrimitives.ReadUInt32LittleEndian(value)));
        }
    }

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        Span<byte> value = stackalloc byte[8];
        value.Clear();
        data.CopyTo(value);
        lock (_lock)
        {
            ConfigAccesses.Add(new ConfigAccess(true, offset, data.Length, BinaryPrimitives.ReadUInt32LittleEndian(value)));
        }

        _inner.WriteConfig(offset, data);
    }

    public void AfterConfigWrite() => _inner.AfterConfigWrite();

    public bool AcceptFeatures(ulong features)
    {
        lock (_lock)
        {
            AcceptedFeatures.Add(features);
        }

        return _inner.AcceptFeatures(features);
    }

    public void Activate(IVirtioDeviceContext context)
    {
        lock (_lock)
        {
            _context = context;
            Array.Clear(_seen);
            for (int q = 0; q < 3; q++)
            {
                ScanUnsynchronized(q, atActivation: true);
            }
        }

        _inner.Activate(context);
    }

    public void Notify(int queueIndex)
    {
        lock (_lock)
        {
            ScanUnsynchronized(queueIndex, atActivation: false);
            Notifications.Add((queueIndex, _clock.GetUtcNow(), queueIndex == 1 ? RecordsUnsynchronized() : []));
            if (queueIndex == 0 && HoldWatchdogQueue)
            {
                _held.Enqueue(queueIndex);
                return;
            }

            if (queueIndex == 1 && SwallowEventQueue)
            {
                return;
            }
        }

        _inner.Notify(queueIndex);
        if (queueIndex == 0 && CorruptHeartbeats)
        {
            CorruptLastHeartbeat();
        }
    }

    // Host side: delivers the notifications held back so far.
    internal int ReleaseHeld()
    {
        int released = 0;
        while (true)
        {
            int queue;
            lock (_lock)
            {
                if (!_held.TryDequeue(out queue))
                {
                    return released;
                }
            }

            _inner.Notify(queue);
            released++;
        }
    }

    public void ResetQueue(int queueIndex) => _inner.ResetQueue(queueIndex);

    public void Reset()
    {
        _inner.Reset();
        Forget();
    }

    public void Quiesce()
    {
        _inner.Quiesce();
        Forget();
    }

    private void Forget()
    {
        lock (_lock)
        {
            _context = null;
            _held.Clear();
        }
    }

    // The device answered a heartbeat; overwrite the byte it wrote before the driver reads it.
    private void CorruptLastHeartbeat()
    {
        ObservedChain? last;
        GuestMemory? memory;
        lock (_lock)
        {
            last = ChainsOn(0).LastOrDefault();
            memory = _context?.Memory;
        }

        if (last is not null && memory is not null && last.Buffers[0].Writable)
        {
            memory.TryWrite(last.Buffers[0].Address, [2]);
        }
    }

    private byte[][] RecordsUnsynchronized()
    {
        GuestMemory? memory = _context?.Memory;
        if (memory is null)
        {
            return [];
        }

        return [.. ChainsOn(1).Where(c => c.Buffers.Length > 0).Select(c =>
        {
            byte[] bytes = new byte[Math.Min(c.Buffers[0].Length, 80 + 1024 + 16384)];
            memory.TryRead(c.Buffers[0].Address, bytes);
            return bytes;
        })];
    }

    private void ScanUnsynchronized(int queueIndex, bool atActivation)
    {
        IVirtioDeviceContext? context = _context;
        if (context is null || (uint)queueIndex >= 3)
        {
            return;
        }

        Virtqueue queue = context.GetQueue(queueIndex);
        if (!queue.IsReady || queue.Format != VirtqueueFormat.Split)
        {
            return;
        }

        VirtqueueConfig config = queue.Config;
        GuestMemory memory = context.Memory;
        memory.TryReadUInt16(config.DriverArea + SplitRingLayout.AvailIndex, out ushort availIndex);
        for (int guard = 0; _seen[queueIndex] != availIndex && guard < config.Size; guard++)
        {
            memory.TryReadUInt16(config.DriverArea + SplitRingLayout.AvailRing + (2u * (uint)(_seen[queueIndex] % config.Size)), out ushort head);
            var buffers = new List<ObservedBuffer>();
            ushort index = head;
            for (int step = 0; step < 16 && index < config.Size; step++)
            {
                memory.TryReadUInt64(config.DescriptorArea + (16u * index), out ulong address);
                memory.TryReadUInt32(config.DescriptorArea + (16u * index) + 8, out uint length);
                memory.TryReadUInt16(config.DescriptorArea + (16u * index) + 12, out ushort flags);
                memory.TryReadUInt16(config.DescriptorArea + (16u * index) + 14, out ushort next);
                byte[] bytes = new byte[Math.Min(length, 20_000u)];
                memory.TryRead(address, bytes);
                buffers.Add(new ObservedBuffer(address, length, (flags & (ushort)DescriptorFlags.Write) != 0, bytes));
                if ((flags & (ushort)DescriptorFlags.Next) == 0)
                {
                    break;
                }

                index = next;
            }

            Chains.Add(new ObservedChain(queueIndex, [.. buffers], atActivation, _clock.GetUtcNow()));
            _seen[queueIndex]++;
        }
    }
}

internal readonly record struct ConfigAccess(bool Write, uint Offset, int Width, uint Value);

internal sealed record ObservedBuffer(ulong Address, uint Length, bool Writable, byte[] Bytes);

internal sealed record ObservedChain(int Queue, ObservedBuffer[] Buffers, bool AtActivation, DateTimeOffset Time);
