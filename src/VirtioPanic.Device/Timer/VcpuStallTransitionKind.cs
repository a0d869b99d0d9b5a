namespace VirtioPanic.Device.Timer;

internal enum VcpuStallTransitionKind
{
    None,
    Stalled,
    Recovered,
    Expired,
}
