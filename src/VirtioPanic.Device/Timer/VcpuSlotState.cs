namespace VirtioPanic.Device.Timer;

// The saved form of one VcpuStallMonitor slot: its state, the vCPU's run time since its last pet,
// and for a stalled slot the VM run time at stage one, the run time it had stalled for then and its
// pending notice's order (0: none). All zero for an untracked slot.
internal readonly record struct VcpuSlotState(int State, TimeSpan SincePet, TimeSpan StalledAt, TimeSpan StalledFor, long NoticeOrder);
