using System.Buffers.Binary;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.VhostUser.Tests.Devices;

/// <summary>
/// A read-only virtio block device (ID 2, one request queue; virtio 1.2 §5.2) whose disk content
/// is the deterministic stream of <see cref="EntropyTestDevice.StreamByte"/> (byte at disk offset
/// <c>o</c> is <c>StreamByte(o)</c>). It exists to meet Linux's stock virtio_blk driver: every
/// request is a header, data and a status byte, so with VIRTIO_F_INDIRECT_DESC the driver sends
/// indirect tables, which this device counts.
/// </summary>
internal sealed class BlockTestDevice : IVirtioDevice
{
    internal const ulong CapacitySectors = 2048;
    private const uint SectorSize = 512;
    private const uint TypeIn = 0;
    private const uint TypeGetId = 8;
    private const byte StatusOk = 0;
    private const byte StatusIoError = 1;
    private const byte StatusUnsupported = 2;

    // struct virtio_blk_config: capacity (le64) at 0; the rest stays zero (no optional features).
    // 64 bytes covers the 60 that QEMU 7.2's vhost-user-blk fetches with GET_CONFIG.
    private readonly byte[] _config = new byte[64];
    private IVirtioDeviceContext? _context;
    private int _requests;
    private int _indirectChains;

    internal BlockTestDevice()
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_config, CapacitySectors);
    }

    public uint DeviceId => 2;

    // The ring features are offered: vhost-user-blk filters the guest's features by ours.
    public ulong DeviceFeatures => VirtioFeatures.IndirectDescriptors | VirtioFeatures.EventIndex;

    public int QueueCount => 1;

    public int ConfigSize => _config.Length;

    internal int Requests => Volatile.Read(ref _requests);

    internal int IndirectChains => Volatile.Read(ref _indirectChains);

    internal static byte DiskByte(ulong offset) => EntropyTestDevice.StreamByte(offset);

    public ushort GetMaxQueueSize(int queueIndex) => 256;

    public void ReadConfig(uint offset, Span<byte> data) => _config.AsSpan((int)offset, data.Length).CopyTo(data);

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
    }

    public bool AcceptFeatures(ulong features) => true;

    public void Activate(IVirtioDeviceContext context) => Volatile.Write(ref _context, context);

    public void Notify(int queueIndex)
    {
        IVirtioDeviceContext? context = Volatile.Read(ref _context);
        if (context is null || !context.GetQueue(queueIndex).IsReady)
        {
            return;
        }

        Virtqueue queue = context.GetQueue(queueIndex);
        bool signal = false;
        do
        {
            queue.DisableNotification();
            while (queue.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok)
            {
                ulong flagsAddress = queue.Config.DescriptorArea + ((ulong)chain.Token.Id * VirtqDescriptor.Size) + 12;
                if (context.Memory.TryReadUInt16(flagsAddress, out ushort flags) && (flags & (ushort)DescriptorFlags.Indirect) != 0)
                {
                    Interlocked.Increment(ref _indirectChains);
                }

                uint written = Serve(chain);
                _ = queue.AddUsed(chain.Token, written);
                Interlocked.Increment(ref _requests);
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

    public void ResetQueue(int queueIndex)
    {
    }

    public void Reset() => Volatile.Write(ref _context, null);

    // Header (16 bytes: type, reserved, sector) in the readable part; data then the status byte in
    // the writable part. Returns the bytes written, status included.
    private static uint Serve(DescriptorChain chain)
    {
        Span<byte> header = stackalloc byte[16];
        if (chain.CopyFromReadable(header) != header.Length || chain.WritableLength == 0)
        {
            return 0;
        }

        uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        uint dataLength = chain.WritableLength - 1;
        byte status;
        if (type == TypeIn)
        {
            ulong start = sector * SectorSize;
            if (sector > CapacitySectors || start + dataLength > CapacitySectors * SectorSize || dataLength > 1024 * 1024)
            {
                status = StatusIoError;
            }
            else
            {
                byte[] data = new byte[dataLength];
                for (int i = 0; i < data.Length; i++)
                {
                    data[i] = DiskByte(start + (ulong)i);
                }

                _ = chain.CopyToWritable(data);
                status = StatusOk;
            }
        }
        else if (type == TypeGetId)
        {
            _ = chain.CopyToWritable("virtiopanic-test"u8);
            status = StatusOk;
        }
        else
        {
            status = StatusUnsupported;
        }

        _ = chain.CopyToWritable([status], dataLength);
        return dataLength + 1;
    }
}
