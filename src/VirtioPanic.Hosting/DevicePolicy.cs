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
/// <para>Staged escalation: <see cref="OnWatchdog"/>, <see cref="OnPanic"/> and
/// <see cref="OnVcpuStall"/> are each the first step of a sequence whose later steps are
/// <see cref="WatchdogEscalation"/>, <see cref="PanicEscalation"/> and
/// <see cref="VcpuStallEscalation"/> (empty: the single action, as before). In configuration the
/// whole sequence is the one key's value, steps separated by <c>;</c>, each later one with its
/// delay: <c>"OnWatchdog": "inject-nmi; 10s dump; 10s reset"</c>. A later step runs its delay after
/// the previous one was carried out, unless the guest recovered meanwhile: for a watchdog
/// escalation the watchdog armed again (a keepalive after the expiry re-arms it), for a vCPU stall
/// every stalled vCPU petting again; for every kind a panic or crash-loaded report (which takes
/// over with its own policy), a driver reset, a shutdown report, a guest reset the hypervisor
/// reports, or a management Continue. A later trigger with a sequence of its own replaces the
/// one in progress. Each step is journaled when decided and when carried out, a cancellation with
/// its reason; a step that fails with steps after it takes no fallback, the next step runs at
/// once instead; the last step's failure takes the usual fallback. An escalation lives in the
/// running service: it is not resumed after a restart (the journal shows where it stopped).</para>
/// </remarks>
public sealed record DevicePolicy
{
    private IReadOnlyList<WatchdogStep> _watchdogEscalation = Policy.StepList<WatchdogStep>.Empty;
    private IReadOnlyList<PanicStep> _panicEscalation = Policy.StepList<PanicStep>.Empty;
    private IReadOnlyList<WatchdogStep> _vcpuStallEscalation = Policy.StepList<WatchdogStep>.Empty;

    /// <summary>The action for a guest panic; with <see cref="PanicEscalation"/>, the first step of its sequence.</summary>
    /// <remarks>Defaults to <see cref="PanicAction.Destroy"/>, libvirt's <c>on_crash</c> default. Configuration key <c>OnPanic</c>, whose value may be a whole sequence (<c>log-only; 30s coredump-restart</c>).</remarks>
    public PanicAction OnPanic { get; init; } = PanicAction.Destroy;

    /// <summary>The action for a watchdog expiry; with <see cref="WatchdogEscalation"/>, the first step of its sequence.</summary>
    /// <remarks>Defaults to <see cref="WatchdogAction.Reset"/>, the QEMU and libvirt default. Configuration key <c>OnWatchdog</c>, whose value may be a whole sequence (<c>inject-nmi; 10s dump; 10s reset</c>).</remarks>
    public WatchdogAction OnWatchdog { get; init; } = WatchdogAction.Reset;

    /// <summary>The steps after <see cref="OnWatchdog"/>, each after a delay, cancelled when the guest recovers (see the remarks of <see cref="DevicePolicy"/>).</summary>
    /// <remarks>Defaults to empty: <see cref="OnWatchdog"/> alone. Configured in the value of <c>OnWatchdog</c>. At most 7 steps; <see cref="WatchdogAction.None"/> is not a later step, and nothing may follow <c>reset</c> or <c>poweroff</c>. The list is copied.</remarks>
    public IReadOnlyList<WatchdogStep> WatchdogEscalation
    {
        get => _watchdogEscalation;
        init => _watchdogEscalation = Policy.StepList<WatchdogStep>.From(value);
    }

    /// <summary>The steps after <see cref="OnPanic"/> for a panic that the guest does not follow with a reboot, each after a delay (see the remarks of <see cref="DevicePolicy"/>).</summary>
    /// <remarks>Defaults to empty: <see cref="OnPanic"/> alone. Configured in the value of <c>OnPanic</c> (<c>log-only; 30s coredump-restart</c>). A <see cref="PanicGracePeriod"/> delays the first step. At most 7 steps; <see cref="PanicAction.LogOnly"/> is not a later step, and nothing may follow <c>destroy</c>, <c>restart</c>, <c>coredump-destroy</c> or <c>coredump-restart</c>. The storm guard's <c>preserve</c> runs alone. The list is copied.</remarks>
    public IReadOnlyList<PanicStep> PanicEscalation
    {
        get => _panicEscalation;
        init => _panicEscalation = Policy.StepList<PanicStep>.From(value);
    }

    /// <summary>The action for a vCPU stall's second stage (the device's <c>VcpuStallExpiredEvent</c>: a stalled vCPU that did not pet again after the guest was told at the first stage); with <see cref="VcpuStallEscalation"/>, the first step of its sequence.</summary>
    /// <remarks>Defaults to <see cref="WatchdogAction.Reset"/>. Configuration key <c>OnVcpuStall</c>, the watchdog vocabulary, whose value may be a whole sequence.</remarks>
    public WatchdogAction OnVcpuStall { get; init; } = WatchdogAction.Reset;

    /// <summary>The steps after <see cref="OnVcpuStall"/>, each after a delay, cancelled when every stalled vCPU pets again (see the remarks of <see cref="DevicePolicy"/>).</summary>
    /// <remarks>Defaults to empty. Configured in the value of <c>OnVcpuStall</c>. The rules of <see cref="WatchdogEscalation"/> apply. The list is copied.</remarks>
    public IReadOnlyList<WatchdogStep> VcpuStallEscalation
    {
        get => _vcpuStallEscalation;
        init => _vcpuStallEscalation = Policy.StepList<WatchdogStep>.From(value);
    }

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
