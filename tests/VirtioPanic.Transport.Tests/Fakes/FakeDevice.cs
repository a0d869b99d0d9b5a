using System.Buffers.Binary;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Transport.Tests.Fakes;

// A small virtio device for transport tests: two queues, an 8-byte configuration space
// (le32 "timeout" read-write at 0, le32 "events" read-only at 4), and a queue worker that runs
// synchronously inside Notify: each chain gets 0xAB written into its writable part and is
// completed; the transport is signalled when the driver wants an interrupt.
internal sealed class FakeDevice : IVirtioDevice
{
    internal const ulong FeatureTimeout = 1UL << 0;
    internal const ulong FeatureUnoffered = 1UL << 5;

    private readonly Lock _lock = new();
    private readonly int[] _notifies;
    private readonly byte[] _config;

    internal FakeDevice(ulong features = FeatureTimeout | VirtioFeatures.EventIndex | VirtioFeatures.IndirectDescriptors, int queueCount = 2, int configSize = 8, uint deviceId = 35)
    {
        DeviceFeatures = features;
        QueueCount = queueCount;
        DeviceId = deviceId;
        _notifies = new int[queueCount];
        _config = new byte[configSize];
    }

    public uint DeviceId { get; }

    public ulong DeviceFeatures { get; }

    public int QueueCount { get; }

    public int ConfigSize => _config.Length;

    internal bool AcceptAll { get; set; } = true;

    internal bool ProcessOnNotify { get; set; } = true;

    // A buggy device: the named IVirtioDevice member throws (the transports must contain it).
    internal string? ThrowFrom { get; set; }

    internal IVirtioDeviceContext? Context { get; private set; }

    internal int ActivateCount { get; private set; }

    internal int ResetCount { get; private set; }

    internal List<int> QueueResets { get; } = [];

    internal int CompletedChains { get; private set; }

    internal int NotifyCount(int queue)
    {
        lock (_lock)
        {
            return _notifies[queue];
        }
    }

    public ushort GetMaxQueueSize(int queueIndex) => queueIndex == 0 ? (ushort)16 : (ushort)8;

    public void ReadConfig(uint offset, Span<byte> data)
    {
        ThrowIf(nameof(ReadConfig));
        lock (_lock)
        {
            _config.AsSpan((int)offset, data.Length).CopyTo(data);
        }
    }

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        ThrowIf(nameof(WriteConfig));
        lock (_lock)
        {
            // Only the timeout field (bytes 0..3) is writable.
            for (int i = 0; i < data.Length; i++)
            {
                if (offset + i < 4)
                {
                    _config[offset + i] = data[i];
                }
            }
        }
    }

    public bool AcceptFeatures(ulong features)
    {
        ThrowIf(nameof(AcceptFeatures));
        return AcceptAll;
    }

    public void Activate(IVirtioDeviceContext context)
    {
        ThrowIf(nameof(Activate));
        Context = context;
        ActivateCount++;
        if (ProcessOnNotify)
        {
            // Buffers published before DRIVER_OK are processed now (virtio-spec-notes §8 trap 13).
            for (int i = 0; i < QueueCount; i++)
            {
                Process(i);
            }
        }
    }

    public void Notify(int queueIndex)
    {
        ThrowIf(nameof(Notify));
        lock (_lock)
        {
            _notifies[queueIndex]++;
        }

        if (ProcessOnNotify)
        {
            Process(queueIndex);
        }
    }

    public void ResetQueue(int queueIndex)
    {
        ThrowIf(nameof(ResetQueue));
        QueueResets.Add(queueIndex);
    }

    public void Reset()
    {
        ThrowIf(nameof(Reset));
        Context = null;
        ResetCount++;
    }

    private void ThrowIf(string member)
    {
        if (ThrowFrom == member)
        {
            throw new InvalidOperationException($"fake device fault in {member}");
        }
    }

    // The device bumps its event counter and tells the driver its configuration changed.
    internal void ChangeConfig()
    {
        lock (_lock)
        {
            uint events = BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(4));
            BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(4), events + 1);
        }

        Context?.SignalConfigChange();
    }

    private void Process(int queueIndex)
    {
        IVirtioDeviceContext? context = Context;
        if (context is null)
        {
            return;
        }

        Virtqueue queue = context.GetQueue(queueIndex);
        if (!queue.IsReady)
        {
            return;
        }

        Span<byte> fill = stackalloc byte[64];
        fill.Fill(0xAB);
        lock (_lock)
        {
            // The engine's no-lost-wakeup loop: process with kicks off, re-enable, re-check.
            do
            {
                queue.DisableNotification();
                while (queue.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok)
                {
                    int written = chain.CopyToWritable(fill[..(int)Math.Min(64u, chain.WritableLength)]);
                    queue.AddUsed(chain.Token, (uint)written);
                    CompletedChains++;
                }

                if (queue.Status is not (VirtqueueStatus.Ok or VirtqueueStatus.Empty))
                {
                    context.SetNeedsReset();
                    return;
                }
            }
            while (queue.EnableNotification());
        }

        if (queue.FlushUsed())
        {
            context.SignalUsedBuffers(queueIndex);
        }
    }
}
