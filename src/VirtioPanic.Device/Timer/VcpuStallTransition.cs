namespace VirtioPanic.Device.Timer;

// What VcpuStallMonitor reports to its listener, outside its lock. StalledFor: the vCPU's run time
// since its last pet at stage one; SinceStall: VM run time since stage one (recovery, stage two).
internal readonly record struct VcpuStallTransition(VcpuStallTransitionKind Kind, int Vcpu, TimeSpan VmRunTime)
{
    public TimeSpan StalledFor { get; init; }

    public TimeSpan SinceStall { get; init; }
}
