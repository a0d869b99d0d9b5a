using VirtioPanic.Virtio.Device;

namespace VirtioPanic.GuestDriver.Machine;

// The IInterruptSink one device's transport raises interrupts through: messages go to the
// controller as they are, the legacy line goes to the line the machine wired the device to.
internal sealed class MachineInterruptSink : IInterruptSink
{
    private readonly InterruptController _controller;
    private readonly int _line;

    internal MachineInterruptSink(InterruptController controller, int line)
    {
        _controller = controller;
        _line = line;
    }

    public void SignalMsi(ulong address, uint data) => _controller.DeliverMessage(address, data);

    public void SetIntxLevel(bool asserted) => _controller.SetLineLevel(_line, asserted);
}
