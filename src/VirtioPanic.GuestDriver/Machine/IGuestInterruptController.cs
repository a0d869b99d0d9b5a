namespace VirtioPanic.GuestDriver.Machine;

/// <summary>
/// The guest's view of its interrupt controller, modelled on an x86 local APIC plus I/O APIC:
/// interrupts arrive as vectors (32 to 255); a message-signalled interrupt names its vector in its
/// data, a level-triggered line is routed to a vector by the guest.
/// </summary>
/// <remarks>
/// A vector is pending until <see cref="TryAcknowledge"/> takes it (it is then in service until
/// <see cref="EndOfInterrupt"/>); a vector routed from a line that is still asserted at the end of
/// interrupt becomes pending again. Thread-safe; the host's devices deliver from any thread.
/// </remarks>
public interface IGuestInterruptController
{
    /// <summary>The message (address and data) a device must write to raise <paramref name="vector"/>.</summary>
    /// <param name="vector">Vector, 32 to 255.</param>
    MsiMessage ComposeMsi(int vector);

    /// <summary>Routes a level-triggered interrupt line to a vector (the I/O APIC redirection entry), or unroutes it with -1.</summary>
    /// <param name="line">Interrupt line (global system interrupt).</param>
    /// <param name="vector">Vector, 32 to 255, or -1 to mask the line.</param>
    void RouteLine(int line, int vector);

    /// <summary>Takes the highest pending vector that is not in service.</summary>
    /// <param name="vector">The vector, now in service.</param>
    /// <returns>False when nothing is pending.</returns>
    bool TryAcknowledge(out int vector);

    /// <summary>Ends the interrupt in service at <paramref name="vector"/>.</summary>
    /// <param name="vector">The vector <see cref="TryAcknowledge"/> returned.</param>
    void EndOfInterrupt(int vector);

    /// <summary>
    /// Registers what to call when a vector becomes pending (the guest's vCPU wakes up). The
    /// callback runs on the delivering thread, must not block, and must not call back into the controller.
    /// </summary>
    /// <param name="wakeup">The callback, or null to remove it.</param>
    void SetWakeup(Action? wakeup);
}
