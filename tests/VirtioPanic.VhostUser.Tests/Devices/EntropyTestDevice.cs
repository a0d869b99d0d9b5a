using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.VhostUser.Tests.Devices;

/// <summary>
/// A virtio entropy device (ID 4, one request queue; virtio 1.2 §5.4) whose "entropy" is a
/// deterministic stream, so a test can check that a guest read exactly the bytes this device wrote.
/// It also counts what the ring engine handed it: chains, chains whose head descriptor was
/// indirect, and the negotiated ring features.
/// </summary>
/// <remarks>
/// Optional extras make it a general protocol-test device: more queues, configuration bytes, and
/// a record of configuration writes.
/// </remarks>
internal sealed class EntropyTestDevice : IVirtioDevice
{
    private readonly Lock _lock = new();
    private readonly List<byte> _produced = [];
    private readonly byte[] _config;
    private readonly List<(uint Offset, byte[] Data)> _configWrites = [];
    private readonly ushort _maxQueueSize;
    private IVirtioDeviceContext? _context;
    private ulong _streamPosition;
    private int _chains;
    private int _indirectChains;
    private int _activations;
    private int _configReads;
    private int _resets;
    private int _queueResets;
    private int _suspensions;
    private int _resumptions;
    private bool _suspended;
    private ulong _activatedFeatures;
    private ulong _acceptedFeatures;

    private string? _notifyThreadName;

    internal EntropyTestDevice(int queueCount = 1, ushort maxQueueSize = 256, int configSize = 0, ulong deviceFeatures = 0, uint deviceId = 4)
    {
        QueueCount = queueCount;
        _maxQueueSize = maxQueueSize;
        _config = new byte[configSize];
        for (int i = 0; i < _config.Length; i++)
        {
            _config[i] = (byte)(0xc0 + i);
        }

        DeviceFeatures = deviceFeatures;
        DeviceId = deviceId;
    }

    public uint DeviceId { get; }

    public ulong DeviceFeatures { get; }

    public int QueueCount { get; }

    public int ConfigSize => _config.Length;

    /// <summary>Every byte written into guest buffers, in order.</summary>
    internal byte[] Produced
    {
        get
        {
            lock (_lock)
            {
                return [.. _produced];
            }
        }
    }

    internal int Chains => Volatile.Read(ref _chains);

    internal int IndirectChains => Volatile.Read(ref _indirectChains);

    internal int Activations => Volatile.Read(ref _activations);

    internal int ConfigReads => Volatile.Read(ref _configReads);

    internal int Resets => Volatile.Read(ref _resets);

    internal int QueueResets => Volatile.Read(ref _queueResets);

    // When set, the device keeps its session across a stop of its rings (IVirtioDevice.Suspend).
    internal bool KeepsSessions { get; init; }

    internal int Suspensions => Volatile.Read(ref _suspensions);

    internal int Resumptions => Volatile.Read(ref _resumptions);

    internal ulong ActivatedFeatures => Volatile.Read(ref _activatedFeatures);

    /// <summary>The features of the most recent <see cref="AcceptFeatures"/> call.</summary>
    internal ulong AcceptedFeatures => Volatile.Read(ref _acceptedFeatures);

    internal IReadOnlyList<(uint Offset, byte[] Data)> ConfigWrites
    {
        get
        {
            lock (_lock)
            {
                return [.. _configWrites];
            }
        }
    }

    internal IVirtioDeviceContext? Context => Volatile.Read(ref _context);

    /// <summary>The deterministic stream: byte <paramref name="position"/> of it (a 64-bit mix of the position).</summary>
    internal static byte StreamByte(ulong position)
    {
        ulong x = (position + 1) * 0x9E3779B97F4A7C15UL;
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9UL;
        x ^= x >> 32;
        return (byte)x;
    }

    public ushort GetMaxQueueSize(int queueIndex) => _maxQueueSize;

    public void ReadConfig(uint offset, Span<byte> data)
    {
        Interlocked.Increment(ref _configReads);
        lock (_lock)
        {
            _config.AsSpan((int)offset, data.Length).CopyTo(data);
        }
    }

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            _configWrites.Add((offset, data.ToArray()));
            data.CopyTo(_config.AsSpan((int)offset));
        }
    }

    /// <summary>Replaces configuration bytes as the device itself would (not a driver write).</summary>
    internal void ChangeConfig(uint offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            data.CopyTo(_config.AsSpan((int)offset));
        }
    }

    public bool AcceptFeatures(ulong features)
    {
        Volatile.Write(ref _acceptedFeatures, features);
        return true;
    }

    public void Activate(IVirtioDeviceContext context)
    {
        Volatile.Write(ref _activatedFeatures, context.NegotiatedFeatures);
        Volatile.Write(ref _context, context);
        Interlocked.Increment(ref _activations);
    }

    // Throws from the next Notify calls while set (a device bug the back end must contain).
    internal bool ThrowOnNotify { get; set; }

    // The name of the thread of the most recent Notify (the back end's event loop).
    internal string? NotifyThreadName => Volatile.Read(ref _notifyThreadName);

    public void Notify(int queueIndex)
    {
        Volatile.Write(ref _notifyThreadName, Thread.CurrentThread.Name);
        if (ThrowOnNotify)
        {
            throw new InvalidOperationException("test device fault in Notify");
        }

        IVirtioDeviceContext? context = Volatile.Read(ref _context);
        if (context is null)
        {
            return;
        }

        Virtqueue queue = context.GetQueue(queueIndex);
        if (!queue.IsReady)
        {
            return;
        }

        bool signal = false;
        do
        {
            queue.DisableNotification();
            while (queue.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok)
            {
                CountIndirect(context, queue, chain.Token.Id);
                uint written = Fill(chain);
                _ = queue.AddUsed(chain.Token, written);
                Interlocked.Increment(ref _chains);
            }

            signal |= queue.FlushUsed();
        }
        while (queue.EnableNotification());

        if (queue.Status != VirtqueueStatus.Ok)
        {
            context.SetNeedsReset();
        }

        if (signal)
        {
            context.SignalUsedBuffers(queueIndex);
        }
    }

    public void ResetQueue(int queueIndex) => Interlocked.Increment(ref _queueResets);

    public void Reset()
    {
        Volatile.Write(ref _context, null);
        _suspended = false;
        Interlocked.Increment(ref _resets);
    }

    public bool Suspend()
    {
        if (!KeepsSessions)
        {
            Reset();
            return false;
        }

        Volatile.Write(ref _context, null);
        _suspended = true;
        Interlocked.Increment(ref _suspensions);
        return true;
    }

    public bool TryResume(IVirtioDeviceContext context)
    {
        if (!_suspended)
        {
            return false;
        }

        _suspended = false;
        Volatile.Write(ref _context, context);
        Interlocked.Increment(ref _resumptions);
        return true;
    }

    // Whether the driver used an indirect table for this chain: the head descriptor's flags, read
    // from the descriptor table the ring engine validated at activation.
    private void CountIndirect(IVirtioDeviceContext context, Virtqueue queue, ushort head)
    {
        ulong flagsAddress = queue.Config.DescriptorArea + ((ulong)head * VirtqDescriptor.Size) + 12;
        if (context.Memory.TryReadUInt16(flagsAddress, out ushort flags) && (flags & (ushort)DescriptorFlags.Indirect) != 0)
        {
            Interlocked.Increment(ref _indirectChains);
        }
    }

    private uint Fill(DescriptorChain chain)
    {
        uint length = Math.Min(chain.WritableLength, 64 * 1024);
        byte[] bytes = new byte[length];
        lock (_lock)
        {
            for (int i = 0; i < bytes.Length; i++)
            {
                bytes[i] = StreamByte(_streamPosition++);
            }

            _produced.AddRange(bytes);
        }

        return (uint)chain.CopyToWritable(bytes);
    }
}
