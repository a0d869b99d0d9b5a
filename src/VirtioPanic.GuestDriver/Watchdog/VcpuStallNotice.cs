namespace VirtioPanic.GuestDriver.Watchdog;

/// <summary>A VCPU_STALL notice the device delivered on <c>noticeq</c> (spec §6.12): stage one of a vCPU stall.</summary>
/// <param name="Vcpu">The stalled vCPU's index.</param>
/// <param name="StalledFor">That vCPU's run time since its last pet when stage one fired.</param>
/// <param name="Timeout">The device's <c>vcpu_timeout_ms</c>.</param>
/// <param name="Stage2Left">VM run time left before stage two when the notice was written.</param>
public readonly record struct VcpuStallNotice(int Vcpu, TimeSpan StalledFor, TimeSpan Timeout, TimeSpan Stage2Left);
