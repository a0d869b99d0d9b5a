namespace VirtioPanic.Device.Timer;

// A VCPU_STALL notice waiting for a noticeq buffer (spec §6.12); Order identifies it.
internal readonly record struct VcpuNotice(long Order, int Vcpu, TimeSpan StalledFor, TimeSpan Timeout, TimeSpan SecondStageLeft);
