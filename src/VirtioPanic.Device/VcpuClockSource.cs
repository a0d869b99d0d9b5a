namespace VirtioPanic.Device;

/// <summary>Which clock per-vCPU stall detection counts each vCPU's run time on (<see cref="WatchdogDeviceStatus.VcpuClock"/>).</summary>
public enum VcpuClockSource
{
    /// <summary>VIRTIO_WDT_F_VCPU_STALL is not offered (<see cref="WatchdogDeviceOptions.VcpuCount"/> is 0).</summary>
    NotOffered,

    /// <summary>The fallback: no <see cref="IVcpuRunClock"/> was given, so every vCPU's run time is the VM's run time (spec §6.12, WDT-DEV-49).</summary>
    VmRunTime,

    /// <summary>The hypervisor's per-vCPU run time (<see cref="IVcpuRunClock"/>).</summary>
    VcpuRunTime,
}
