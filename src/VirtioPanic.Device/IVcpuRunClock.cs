namespace VirtioPanic.Device;

/// <summary>
/// The hypervisor's per-vCPU run time, for per-vCPU stall detection (VIRTIO_WDT_F_VCPU_STALL,
/// spec §6.12): how long each vCPU has executed guest code.
/// </summary>
/// <remarks>
/// <para>A vCPU's run time must be monotonic and must exclude time the host did not run it
/// (descheduled, the VM paused, stopped or saved) and time it sat halted waiting for an interrupt
/// (x86 HLT or MWAIT, Arm WFI): a halted idle vCPU is then never reported as stalled. Its origin is
/// arbitrary (the device only takes differences), and it may differ per vCPU.</para>
/// <para>Without a clock (a vhost-user back end, which does not see vCPUs) the device uses the
/// VM's run time for every vCPU and says so in <see cref="WatchdogDeviceStatus.VcpuClock"/>
/// (WDT-DEV-49).</para>
/// <para>Threading: <see cref="GetRunTime"/> is called on the thread of a <c>vcpu_heartbeat</c>
/// write (a vCPU thread or the vhost-user loop thread, possibly inside the transport's register
/// lock) and on the device's timer thread; it must be cheap (the device calls it once per pet and
/// once per tracked vCPU per check), thread-safe, must not block and must not call into the
/// device.</para>
/// </remarks>
public interface IVcpuRunClock
{
    /// <summary>The run time of one vCPU.</summary>
    /// <param name="vcpuIndex">The vCPU's index, from 0 to <see cref="WatchdogDeviceOptions.VcpuCount"/> − 1.</param>
    /// <returns>That vCPU's run time so far; never less than a value returned before for the same vCPU.</returns>
    TimeSpan GetRunTime(int vcpuIndex);
}
