namespace VirtioPanic.Virtio.Device;

/// <summary>
/// Implemented by a transport (virtio-pci, virtio-mmio): how a <see cref="VirtioDeviceController"/>
/// turns a device's requests into the transport's interrupt mechanism (MSI-X vector, ISR bit and
/// INTx, or the virtio-mmio InterruptStatus register and IRQ line).
/// </summary>
/// <remarks>
/// The controller never calls these members while it holds its lock. They may be called from any
/// thread (a device worker, a vCPU) and concurrently; implementations must be thread-safe, must not
/// block, and must not call back into the controller's control path.
/// </remarks>
public interface IVirtioTransportSignals
{
    /// <summary>Raises a used-buffer notification for a queue (virtio 1.2 §2.3 "Notifications").</summary>
    /// <param name="queueIndex">Queue index, below the device's queue count.</param>
    void SignalUsedBuffers(int queueIndex);

    /// <summary>Raises a configuration-change notification (virtio 1.2 §2.3, §2.5).</summary>
    void SignalConfigChange();
}
