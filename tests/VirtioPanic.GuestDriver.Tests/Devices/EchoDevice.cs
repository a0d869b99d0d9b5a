using System.Buffers.Binary;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Tests.Devices;

// A simple virtio device living in the tests: queue 0 echoes each chain's readable bytes into its
// writable part; queue 1 fills writable buffers with 0x5A ("entropy"). Processing runs
// synchronously inside Notify and at activation, unless the device is Stalled (a slow back end:
// buffers stay available until ProcessAll or the next activation).
// Configuration: le32 epoch_a at 0, le32 epoch_b at 4, always equal (updated together, under the
// lock, then signalled); a ReadConfig hook can change them between two guest accesses.
internal sealed class EchoDevice : IVirtioDevice
{
    internal const uint Id = 60;
    internal const ulong FeatureEcho = 1UL << 0;
    internal const ulong FeatureNeverOffered = 1UL << 7;
    internal const int MaxChain = 4096;

    private readonly Lock _lock = new();
    private readonly long[] _completed = new long[2];
    private uint _epoch;
    private IVirtioDeviceContext? _context;
    private int _tearReadsLeft;

    internal EchoDevice(ulong features = FeatureEcho | VirtioFeatures.EventIndex | VirtioFeatures.IndirectDescriptors | VirtioFeatures.RingPacked)
    {
        DeviceFeatures = features;
    }

    public uint DeviceId => Id;

    public ulong DeviceFeatures { get; }

    public int QueueCount => 2;

    public int ConfigSize => 8;

    internal bool Stalled { get; set; }

    internal int Activations { get; private set; }

    internal int Resets { get; private set; }

    internal ulong AcceptedFeatures { get; private set; }

    internal bool IsActive => Volatile.Read(ref _context) is not null;

    internal long Completed(int queue)
    {
        lock (_lock)
        {
            return _completed[queue];
        }
    }

    // The next `reads` guest reads of offset 4 first change the configuration (a concurrent update
    // landing between the guest's two accesses).
    internal void TearNextReads(int reads) => Volatile.Write(ref _tearReadsLeft, reads);

    public ushort GetMaxQueueSize(int queueIndex) => 256;

    public void ReadConfig(uint offset, Span<byte> data)
    {
        if (offset == 4 && Interlocked.Decrement(ref _tearReadsLeft) >= 0)
        {
            ChangeConfig();
        }

        Span<byte> image = stackalloc byte[8];
        lock (_lock)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(image, _epoch);
            BinaryPrimitives.WriteUInt32LittleEndian(image[4..], _epoch);
        }

        data.Clear();
        image[(int)offset..][..Math.Min(data.Length, 8 - (int)offset)].CopyTo(data);
    }

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
    }

    public bool AcceptFeatures(ulong features)
    {
        AcceptedFeatures = features;
        return true;
    }

    public void Activate(IVirtioDeviceContext context)
    {
        Volatile.Write(ref _context, context);
        Activations++;
        Process(0);
        Process(1);
    }

    public void Notify(int queueIndex) => Process(queueIndex);

    public void ResetQueue(int queueIndex)
    {
    }

    public void Reset()
    {
        lock (_lock)
        {
            Volatile.Write(ref _context, null);
            Resets++;
        }
    }

    // Host side: the configuration changes (both fields at once) and the driver is told.
    internal void ChangeConfig()
    {
        IVirtioDeviceContext? context;
        lock (_lock)
        {
            _epoch++;
            context = _context;
        }

        context?.SignalConfigChange();
    }

    // Host side: process whatever is available now, stalled or not.
    internal void ProcessAll() => Process(0, force: true);

    private void Process(int queueIndex, bool force = false)
    {
        if (Stalled && !force)
        {
            return;
        }

        Span<byte> scratch = stackalloc byte[MaxChain];
        bool signal;
        IVirtioDeviceContext? context;
        lock (_lock)
        {
            context = _context;
            if (context is null || (uint)queueIndex > 1)
            {
                return;
            }

            Virtqueue queue = context.GetQueue(queueIndex);
            if (!queue.IsReady)
            {
                return;
            }

            do
            {
                queue.DisableNotification();
                while (queue.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok)
                {
                    int written;
                    if (queueIndex == 0)
                    {
                        int length = chain.CopyFromReadable(scratch[..(int)Math.Min(chain.ReadableLength, MaxChain)]);
                        written = chain.CopyToWritable(scratch[..length]);
                    }
                    else
                    {
                        scratch[..(int)Math.Min(chain.WritableLength, MaxChain)].Fill(0x5A);
                        written = chain.CopyToWritable(scratch[..(int)Math.Min(chain.WritableLength, MaxChain)]);
                    }

                    queue.AddUsed(chain.Token, (uint)written);
                    _completed[queueIndex]++;
                }

                if (queue.Status is not (VirtqueueStatus.Ok or VirtqueueStatus.Empty))
                {
                    // A ring error: stop and ask for a reset (virtio 1.2 §2.1.2).
                    context.SetNeedsReset();
                    return;
                }
            }
            while (queue.EnableNotification());

            signal = queue.FlushUsed();
        }

        if (signal)
        {
            context.SignalUsedBuffers(queueIndex);
        }
    }
}
