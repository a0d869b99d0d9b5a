namespace VirtioPanic.Hosting;

/// <summary>
/// Implemented by the hypervisor: what the policy service may do to the VM behind a watchdog
/// device. Every member reports failure through <see cref="VmControlResult"/> (an exception or a
/// call outlasting <see cref="VirtioPanicOptions.ActionTimeout"/> counts as a failure too), and the
/// service then runs the documented fallback (see <see cref="DevicePolicy"/>).
/// </summary>
/// <remarks>
/// The service serializes calls per device. It calls <see cref="Device.WatchdogDevice.Pause"/> and
/// <see cref="Device.WatchdogDevice.Resume"/> itself after a successful pause or resume, and sets the
/// device's boot reason before <see cref="ResetAsync"/>; the implementation need only act on the VM.
/// With <see cref="VirtioPanicOptions.InlinePanicHandling"/> a call for a panic may arrive on the vCPU
/// thread that reported it, inside its register access (after the transport's register lock is
/// released): it must not wait for that vCPU to stop.
/// </remarks>
public interface IVmControl
{
    /// <summary>Stops the VM's vCPUs, keeping its state (QEMU <c>stop</c>).</summary>
    /// <param name="context">Which device and event the call is for.</param>
    /// <param name="cancellationToken">Cancelled when the action timeout elapses.</param>
    /// <returns>Whether the VM is paused.</returns>
    ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken);

    /// <summary>Runs a paused VM again (QEMU <c>cont</c>).</summary>
    /// <param name="context">Which device the call is for.</param>
    /// <param name="cancellationToken">Cancelled when the action timeout elapses.</param>
    /// <returns>Whether the VM runs.</returns>
    ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken);

    /// <summary>Resets the VM (a hard reset, as <c>system_reset</c>); <see cref="VmActionContext.BootReason"/> says why.</summary>
    /// <param name="context">Which device and event the call is for.</param>
    /// <param name="cancellationToken">Cancelled when the action timeout elapses.</param>
    /// <returns>Whether the VM was reset.</returns>
    ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken);

    /// <summary>Powers the VM off at once (libvirt <c>destroy</c>).</summary>
    /// <param name="context">Which device and event the call is for.</param>
    /// <param name="cancellationToken">Cancelled when the action timeout elapses.</param>
    /// <returns>Whether the VM is off.</returns>
    ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken);

    /// <summary>Asks the guest to shut down (an ACPI power-button press, <c>system_powerdown</c>).</summary>
    /// <param name="context">Which device and event the call is for.</param>
    /// <param name="cancellationToken">Cancelled when the action timeout elapses.</param>
    /// <returns>Whether the request was delivered (not whether the guest obeyed).</returns>
    ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken);

    /// <summary>Writes a consistent image of guest memory to <paramref name="path"/> (pausing the vCPUs around it if needed).</summary>
    /// <param name="context">Which device and event the call is for.</param>
    /// <param name="path">The file to create; its directory exists.</param>
    /// <param name="cancellationToken">Cancelled when the action timeout elapses.</param>
    /// <returns>Whether the file was written completely.</returns>
    ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken);

    /// <summary>Injects a non-maskable interrupt (all vCPUs on x86, the first elsewhere, as QEMU does).</summary>
    /// <param name="context">Which device and event the call is for.</param>
    /// <param name="cancellationToken">Cancelled when the action timeout elapses.</param>
    /// <returns>Whether the NMI was delivered.</returns>
    ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken);
}
