using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Device;

// The driver-visible registers of one virtqueue (virtio 1.2 §4.1.4.3 queue_size, queue_enable,
// queue_desc/driver/device; §4.2.2 QueueSize, QueueReady, QueueDesc*/QueueDriver*/QueueDevice*)
// and the device-side queue they configure.
//
// Size and the three addresses are written only under the controller's lock. Enabled and
// KickPending are also read by the lock-free notify path, hence the volatile accesses.
internal sealed class QueueRegisters
{
    private volatile bool _enabled;
    private volatile bool _kickPending;

    internal QueueRegisters(ushort maxSize)
    {
        MaxSize = maxSize;
        Size = maxSize;
        Queue = new Virtqueue(maxSize);
    }

    internal Virtqueue Queue { get; }

    internal ushort MaxSize { get; }

    // queue_size: the maximum after reset; the driver may lower it (§4.1.4.3).
    internal ushort Size { get; set; }

    internal ulong DescriptorArea { get; set; }

    internal ulong DriverArea { get; set; }

    internal ulong DeviceArea { get; set; }

    // queue_enable / QueueReady. Set only after Queue.Activate succeeded (release), read by the
    // notify path (acquire), so a kick that sees true also sees the activated queue.
    internal bool Enabled
    {
        get => _enabled;
        set => _enabled = value;
    }

    // A kick arrived while it could not be delivered (queue disabled or device not yet live); it is
    // replayed to the device once the device goes live, so buffers published before DRIVER_OK are
    // not left waiting for another kick (virtio-spec-notes §8 trap 13).
    internal bool KickPending
    {
        get => _kickPending;
        set => _kickPending = value;
    }

    // A used-buffer signal raised by the device while the controller's lock was held on the same
    // thread (for example from inside IVirtioDevice.Activate); raised after the lock is released.
    // Only touched under the lock.
    internal bool DeferredSignal { get; set; }

    internal VirtqueueConfig Config => new(Size, DescriptorArea, DriverArea, DeviceArea);

    internal ulong GetAddress(VirtqueueArea area) => area switch
    {
        VirtqueueArea.Descriptor => DescriptorArea,
        VirtqueueArea.Driver => DriverArea,
        _ => DeviceArea,
    };

    internal void SetAddress(VirtqueueArea area, ulong value)
    {
        switch (area)
        {
            case VirtqueueArea.Descriptor:
                DescriptorArea = value;
                break;
            case VirtqueueArea.Driver:
                DriverArea = value;
                break;
            default:
                DeviceArea = value;
                break;
        }
    }

    // Back to the reset values: maximum size, zero addresses, disabled, ring state cleared.
    internal void Reset()
    {
        Enabled = false;
        KickPending = false;
        DeferredSignal = false;
        Queue.Reset();
        Size = MaxSize;
        DescriptorArea = 0;
        DriverArea = 0;
        DeviceArea = 0;
    }
}
