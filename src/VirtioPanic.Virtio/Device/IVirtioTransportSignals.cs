namespace VirtioPanic.Virtio.Device;

/// <summary>
/// Implemented by a transport (virtio-pci, virtio-mmio): how a <see cref="VirtioDeviceController"/>
/// turns a device's requests into the transport's interrupt mechanism (MSI-X vector, ISR bit and
/// INTx, or the virtio-mmio InterruptStatus register and IRQ line).
/// </summary>
/// <remarks>
/// The controller never calls the signalling members while it holds its lock (<see cref="DeviceFaulted"/> excepted). They may be called from any
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

    /// <summary>
    /// A member of the device threw and the controller contained the exception (it set
    /// DEVICE_NEEDS_RESET and counted it in <see cref="VirtioDeviceController.DeviceFaults"/>).
    /// Called once per fault, on the thread that made the failed call, possibly while the
    /// controller's lock is held: record or log it and return; do not call back into the
    /// controller. The default does nothing.
    /// </summary>
    /// <param name="operation">The device member that threw (<c>Notify</c>, <c>ReadConfig</c>, <c>Activate</c>, ...).</param>
    /// <param name="exception">What it threw.</param>
    void DeviceFaulted(string operation, Exception exception)
    {
    }
}
