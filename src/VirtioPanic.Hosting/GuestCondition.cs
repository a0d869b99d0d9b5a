namespace VirtioPanic.Hosting;

/// <summary>What the policy service believes about a device's guest, from the events it handled.</summary>
public enum GuestCondition
{
    /// <summary>Running normally (or nothing reported yet).</summary>
    Running,

    /// <summary>The guest reported a panic and still runs (<c>log-only</c>, a grace window, or an action that failed). Cleared by a reset, a shutdown report or a management Continue.</summary>
    Panicked,

    /// <summary>The guest reported that a crash kernel took over.</summary>
    CrashKernel,

    /// <summary>The policy paused the VM (<c>preserve</c>, watchdog <c>pause</c>, or the storm guard); a management Continue resumes it.</summary>
    Paused,

    /// <summary>The policy powered the VM off.</summary>
    PoweredOff,
}
