namespace VirtioPanic.Virtio.Device;

/// <summary>
/// Implemented by the hypervisor: how a transport raises interrupts in the guest. PCI uses both
/// members (MSI-X messages, or the INTx pin when MSI-X is off); virtio-mmio drives its one
/// interrupt line through <see cref="SetIntxLevel"/>.
/// </summary>
/// <remarks>Called from device worker threads as well as vCPU threads; implementations must be thread-safe and must not block.</remarks>
public interface IInterruptSink
{
    /// <summary>Delivers one message-signalled interrupt: a 32-bit write of <paramref name="data"/> to <paramref name="address"/>.</summary>
    /// <param name="address">Message address from the MSI-X table entry.</param>
    /// <param name="data">Message data from the MSI-X table entry.</param>
    void SignalMsi(ulong address, uint data);

    /// <summary>Sets the level of the function's legacy interrupt line (INTx pin, or the MMIO device's IRQ).</summary>
    /// <param name="asserted">True to assert (level high), false to deassert.</param>
    void SetIntxLevel(bool asserted);
}
