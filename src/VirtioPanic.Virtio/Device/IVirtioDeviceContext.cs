using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Device;

/// <summary>
/// What a transport hands a device when the driver sets DRIVER_OK: the guest's memory, the
/// negotiated features, the activated queues, and the ways to talk back to the driver. The device
/// never learns which transport (PCI, MMIO, vhost-user) it is behind.
/// </summary>
public interface IVirtioDeviceContext
{
    /// <summary>The guest's memory.</summary>
    GuestMemory Memory { get; }

    /// <summary>The feature bits both sides accepted (FEATURES_OK).</summary>
    ulong NegotiatedFeatures { get; }

    /// <summary>The queue at <paramref name="index"/>; inactive (<see cref="Virtqueue.IsReady"/> false) when the driver did not enable it.</summary>
    /// <param name="index">Queue index, 0 to the device's queue count - 1.</param>
    Virtqueue GetQueue(int index);

    /// <summary>Sends a used-buffer notification for a queue (call after <see cref="Virtqueue.FlushUsed"/> returned true).</summary>
    /// <param name="queueIndex">Queue index.</param>
    void SignalUsedBuffers(int queueIndex);

    /// <summary>
    /// Reports that device-specific configuration changed: the configuration generation moves
    /// and, once the driver is live, a configuration-change notification is sent (virtio 1.2 §2.5, §3.2.1).
    /// </summary>
    void SignalConfigChange();

    /// <summary>
    /// Sets DEVICE_NEEDS_RESET and notifies the driver (virtio 1.2 §2.1.2). The device should then
    /// stop processing until it is reset.
    /// </summary>
    void SetNeedsReset();
}
