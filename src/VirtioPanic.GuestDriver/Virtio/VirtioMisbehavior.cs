using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Virtio;

/// <summary>
/// A misbehaving guest driver: each member breaks one driver rule of the virtio specification on
/// purpose, so a test can check that the host survives it, reports it and recovers after a reset.
/// </summary>
/// <remarks>Guest code: call on the vCPU. None of these throw on what the device does in response.</remarks>
public sealed class VirtioMisbehavior
{
    private readonly GuestVirtioDevice _device;
    private readonly GuestTransport _transport;

    internal VirtioMisbehavior(GuestVirtioDevice device, GuestTransport transport)
    {
        _device = device;
        _transport = transport;
    }

    /// <summary>
    /// Initializes without ever setting FEATURES_OK (virtio 1.2 §3.1.1 steps 5–6 skipped): features
    /// written, queues set up, DRIVER_OK written. Returns the status the device shows afterwards.
    /// </summary>
    /// <param name="options">Features and queues.</param>
    public DeviceStatus InitializeSkippingFeaturesOk(VirtioDriverOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _device.Begin();
        _transport.WriteDriverFeatures(_transport.ReadDeviceFeatures() & (options.Features | VirtioFeatures.Version1));
        _device.SetUpQueues(options.Queues, options.Interrupts, options.MaxIndirect);
        _transport.WriteStatus((byte)(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.DriverOk));
        return _device.ReadStatus();
    }

    /// <summary>
    /// Accepts <paramref name="features"/> whether or not the device offered them (virtio 1.2
    /// §2.2.1: the driver MUST NOT), sets FEATURES_OK, and returns the status read back.
    /// </summary>
    /// <param name="features">The features to accept; VERSION_1 is added.</param>
    public DeviceStatus AcceptFeatures(ulong features)
    {
        _device.Begin();
        _transport.WriteDriverFeatures(features | VirtioFeatures.Version1);
        _transport.WriteStatus((byte)(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk));
        return _device.ReadStatus();
    }

    /// <summary>
    /// Accesses registers with the wrong width: a 2-byte read of the 1-byte status, a 1-byte read
    /// of a 32-bit feature word and a 2-byte write to the status (PCI); 2- and 1-byte accesses to
    /// 32-bit registers (MMIO). Returns how many wrong accesses were made.
    /// </summary>
    public int AccessWithWrongWidths()
    {
        Span<byte> two = stackalloc byte[2];
        Span<byte> one = stackalloc byte[1];
        if (_transport.Kind == VirtioTransportKind.Pci)
        {
            _transport.RawRead(_transport.StatusRegister, two);
            _transport.RawRead(_transport.FeatureRegister, one);
            _transport.RawWrite(_transport.StatusRegister, [0xFF, 0xFF]);
            return 3;
        }

        _transport.RawRead(_transport.StatusRegister, two);
        _transport.RawRead(_transport.FeatureRegister, one);
        _transport.RawWrite(_transport.StatusRegister, [0x0F]);
        return 3;
    }

    /// <summary>Writes a raw status value (for example DRIVER_OK without the steps before it).</summary>
    /// <param name="status">The value.</param>
    public void WriteStatus(DeviceStatus status) => _transport.WriteStatus((byte)status);

    /// <summary>Sends an available-buffer notification for any queue index, set up or not.</summary>
    /// <param name="queue">The queue index.</param>
    public void NotifyQueue(int queue) => _transport.Notify(queue);

    /// <summary>Corrupts a set-up queue's ring in the given way, publishes and notifies.</summary>
    /// <param name="queue">The queue index.</param>
    /// <param name="corruption">What to break.</param>
    /// <param name="validBuffer">A guest buffer of at least 16 bytes the corruption may point at.</param>
    public void CorruptRing(int queue, RingCorruption corruption, ulong validBuffer)
    {
        GuestVirtqueue q = _device.Queue(queue);
        if (corruption != RingCorruption.AddressOutsideMemory && q.Ring is not SplitRingDriver)
        {
            throw new NotSupportedException("This corruption needs a split ring.");
        }

        switch (corruption)
        {
            case RingCorruption.AddressOutsideMemory:
                q.Ring.TryAdd([new DriverBuffer(0xFFFF_FFFF_F000, 16, DeviceWritable: true)], out _);
                break;
            case RingCorruption.DescriptorOutOfRange:
            {
                var split = (SplitRingDriver)q.Ring;
                split.WriteAvailEntry(split.AvailIndex, (ushort)(split.Size + 3));
                split.StoreAvailIndex((ushort)(split.AvailIndex + 1));
                break;
            }

            case RingCorruption.AvailIndexRunaway:
            {
                var split = (SplitRingDriver)q.Ring;
                split.StoreAvailIndex((ushort)(split.AvailIndex + split.Size + 1));
                break;
            }

            case RingCorruption.LoopedChain:
            {
                var split = (SplitRingDriver)q.Ring;
                split.WriteDescriptor(0, new VirtqDescriptor(validBuffer, 8, DescriptorFlags.Next | DescriptorFlags.Write, 1));
                split.WriteDescriptor(1, new VirtqDescriptor(validBuffer + 8, 8, DescriptorFlags.Next | DescriptorFlags.Write, 0));
                split.WriteAvailEntry(split.AvailIndex, 0);
                split.StoreAvailIndex((ushort)(split.AvailIndex + 1));
                break;
            }

            default:
                throw new ArgumentOutOfRangeException(nameof(corruption));
        }

        q.Notify();
    }

    /// <summary>
    /// Posts <paramref name="chains"/> one-buffer chains of <paramref name="buffer"/> (reusing it),
    /// notifies, and resets the device at once without waiting for any completion: the device is
    /// reset while it may still be processing. Returns how many chains were posted.
    /// </summary>
    /// <param name="queue">The queue index.</param>
    /// <param name="buffer">A device-writable guest buffer.</param>
    /// <param name="length">Its length.</param>
    /// <param name="chains">How many chains to post.</param>
    public int ResetDuringIo(int queue, ulong buffer, uint length, int chains)
    {
        GuestVirtqueue q = _device.Queue(queue);
        int posted = 0;
        for (int i = 0; i < chains && q.TryAdd([new DriverBuffer(buffer, length, DeviceWritable: true)]); i++)
        {
            posted++;
            if (i % 8 == 7)
            {
                q.Notify();
            }
        }

        q.Notify();
        _transport.WriteStatus(0);
        return posted;
    }

    /// <summary>
    /// Floods a queue: keeps it full of one-buffer chains and notifies after every chain, reaping
    /// without ever sleeping, for <paramref name="notifications"/> notifications. Returns the
    /// chains the device completed meanwhile.
    /// </summary>
    /// <param name="queue">The queue index.</param>
    /// <param name="buffer">A device-writable guest buffer.</param>
    /// <param name="length">Its length.</param>
    /// <param name="notifications">How many notifications to send.</param>
    public long Flood(int queue, ulong buffer, uint length, int notifications)
    {
        GuestVirtqueue q = _device.Queue(queue);
        long before = q.CompletedCount;
        for (int i = 0; i < notifications; i++)
        {
            while (q.TryGetUsed(out _))
            {
            }

            q.TryAdd([new DriverBuffer(buffer, length, DeviceWritable: true)]);
            q.Notify();
        }

        while (q.TryGetUsed(out _))
        {
        }

        return q.CompletedCount - before;
    }

    /// <summary>Reads a 32-bit word at <paramref name="offset"/> of the transport's registers (common configuration on PCI, the register window on MMIO).</summary>
    /// <param name="offset">Register offset.</param>
    public uint ReadRegister32(ulong offset)
    {
        Span<byte> data = stackalloc byte[4];
        _transport.RawRead(offset, data);
        return BinaryPrimitives.ReadUInt32LittleEndian(data);
    }
}
