using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Device;

// One activation of a device: from DRIVER_OK to the next reset. The controller hands it to
// IVirtioDevice.Activate. Every call back into the controller carries the session's epoch, so a
// device worker that outlives its session (a late completion after a reset) cannot interrupt,
// reconfigure or fail the driver of the next session.
internal sealed class DeviceSession : IVirtioDeviceContext
{
    private readonly VirtioDeviceController _controller;
    private readonly int _epoch;

    internal DeviceSession(VirtioDeviceController controller, int epoch, ulong negotiatedFeatures)
    {
        _controller = controller;
        _epoch = epoch;
        NegotiatedFeatures = negotiatedFeatures;
    }

    public GuestMemory Memory => _controller.Memory;

    public ulong NegotiatedFeatures { get; }

    public Virtqueue GetQueue(int index) => _controller.GetQueue(index);

    public void SignalUsedBuffers(int queueIndex) => _controller.SignalUsedBuffersFromSession(_epoch, queueIndex);

    public void SignalConfigChange() => _controller.SignalConfigChangeFromSession(_epoch);

    public void SetNeedsReset() => _controller.SetNeedsResetFromSession(_epoch);
}
