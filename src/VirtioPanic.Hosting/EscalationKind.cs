namespace VirtioPanic.Hosting;

/// <summary>What started an escalation (<see cref="PendingEscalation"/>), and so which policy's steps it runs.</summary>
public enum EscalationKind
{
    /// <summary>A watchdog expiry (<see cref="DevicePolicy.OnWatchdog"/> and <see cref="DevicePolicy.WatchdogEscalation"/>).</summary>
    Watchdog,

    /// <summary>A guest panic that the guest did not follow with a reboot (<see cref="DevicePolicy.OnPanic"/> and <see cref="DevicePolicy.PanicEscalation"/>).</summary>
    Panic,

    /// <summary>A vCPU stall's second stage (<see cref="DevicePolicy.OnVcpuStall"/> and <see cref="DevicePolicy.VcpuStallEscalation"/>).</summary>
    VcpuStall,
}
