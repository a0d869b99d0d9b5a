namespace VirtioPanic.Hosting;

/// <summary>What a pending policy deadline is waiting for.</summary>
public enum PendingDeadlineKind
{
    /// <summary>The grace window after a panic (<see cref="DevicePolicy.PanicGracePeriod"/>).</summary>
    PanicGrace,

    /// <summary>The crash kernel's deadline (<see cref="DevicePolicy.CrashKernelDeadline"/>).</summary>
    CrashKernel,
}
