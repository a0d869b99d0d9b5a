namespace VirtioPanic.Hosting;

/// <summary>
/// A later step of a watchdog or vCPU-stall escalation (<see cref="DevicePolicy.WatchdogEscalation"/>,
/// <see cref="DevicePolicy.VcpuStallEscalation"/>): <see cref="After"/> the previous step was carried
/// out, unless the guest recovered meanwhile, <see cref="Action"/>. In configuration a step is written
/// <c>10s dump</c> (see <see cref="DevicePolicy.OnWatchdog"/>).
/// </summary>
/// <param name="After">How long after the previous step (positive, at most one day).</param>
/// <param name="Action">What to do then (not <see cref="WatchdogAction.None"/>).</param>
public readonly record struct WatchdogStep(TimeSpan After, WatchdogAction Action)
{
    /// <summary>The step in configuration syntax, for example <c>10s dump</c>.</summary>
    /// <returns>The delay and the action's libvirt-style name.</returns>
    public override string ToString() => Policy.EscalationText.Step(After, PolicyNames.Of(Action));
}
