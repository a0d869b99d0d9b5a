namespace VirtioPanic.Hosting;

/// <summary>
/// What the policy service does about one device's events. Immutable: change a device's policy at
/// run time with <see cref="PolicyService.SetPolicyAsync"/>, effective from the next event.
/// </summary>
/// <remarks>
/// <para>Per event type: a panic applies <see cref="OnPanic"/> (after <see cref="PanicGracePeriod"/>
/// when set); an expiry applies <see cref="OnWatchdog"/>; a crash-loaded report is logged and, when
/// <see cref="CrashKernelDeadline"/> is set, arms a deadline whose action is
/// <see cref="OnCrashKernelTimeout"/>; a pretimeout is logged (the guest acts on it); a shutdown
/// report is logged. A reset the policy makes sets the device's boot reason first (PANIC or WATCHDOG).</para>
/// <para>Steps: <c>destroy</c> = power off; <c>restart</c> = reset; <c>preserve</c> = pause;
/// <c>coredump-destroy</c> = dump, power off; <c>coredump-restart</c> = dump, reset; watchdog
/// <c>reset</c>/<c>shutdown</c>/<c>poweroff</c>/<c>pause</c>/<c>dump</c>/<c>inject-nmi</c> = one call each.</para>
/// <para>Fallbacks when a step fails (both the failure and the fallback are journaled and logged):
/// a failed dump goes on with the remaining steps, or, when it was the only step (watchdog
/// <c>dump</c>), resets the VM; a failed reset, shutdown request or NMI falls back to power off
/// (an NMI first to reset); a failed pause, resume or power off has no fallback and is reported.</para>
/// <para>Escalation: a panic arriving while <see cref="StormThreshold"/> - 1 others happened within
/// <see cref="StormWindow"/> trips the storm guard: the device's panic action becomes
/// <c>preserve</c> until the policy is set again, and the trip is reported.</para>
/// </remarks>
public sealed record DevicePolicy
{
    /// <summary>The action for a guest panic.</summary>
    /// <remarks>Defaults to <see cref="PanicAction.Destroy"/>, libvirt's <c>on_crash</c> default. Configuration key <c>OnPanic</c>.</remarks>
    public PanicAction OnPanic { get; init; } = PanicAction.Destroy;

    /// <summary>The action for a watchdog expiry.</summary>
    /// <remarks>Defaults to <see cref="WatchdogAction.Reset"/>, the QEMU and libvirt default. Configuration key <c>OnWatchdog</c>.</remarks>
    public WatchdogAction OnWatchdog { get; init; } = WatchdogAction.Reset;

    /// <summary>How long to wait after a panic before applying <see cref="OnPanic"/>, so that the guest's own dump-and-reboot can finish; a guest reset or shutdown report within it cancels the action.</summary>
    /// <remarks>Defaults to zero (act at once). At most one day.</remarks>
    public TimeSpan PanicGracePeriod { get; init; }

    /// <summary>After a crash-loaded report, how long the crash kernel has to finish (report a shutdown, or the hypervisor reports a guest reset) before <see cref="OnCrashKernelTimeout"/> applies.</summary>
    /// <remarks>Defaults to zero: no deadline, the report is only logged. At most one day.</remarks>
    public TimeSpan CrashKernelDeadline { get; init; }

    /// <summary>The action when the crash kernel misses <see cref="CrashKernelDeadline"/>.</summary>
    /// <remarks>Defaults to <see cref="PanicAction.Restart"/>.</remarks>
    public PanicAction OnCrashKernelTimeout { get; init; } = PanicAction.Restart;

    /// <summary>How many panics within <see cref="StormWindow"/> trip the storm guard (switch the panic action to preserve).</summary>
    /// <remarks>Defaults to 3; 0 disables the guard; otherwise at least 2.</remarks>
    public int StormThreshold { get; init; } = 3;

    /// <summary>The window over which panics are counted for the storm guard.</summary>
    /// <remarks>Defaults to 10 minutes. Positive, at most one day.</remarks>
    public TimeSpan StormWindow { get; init; } = TimeSpan.FromMinutes(10);
}
