namespace VirtioPanic.Hosting;

/// <summary>
/// A later step of a panic escalation (<see cref="DevicePolicy.PanicEscalation"/>): <see cref="After"/>
/// the previous step was carried out, unless the guest rebooted, reported a shutdown or a crash
/// kernel took over meanwhile, <see cref="Action"/>. In configuration a step is written
/// <c>30s coredump-restart</c> (see <see cref="DevicePolicy.OnPanic"/>).
/// </summary>
/// <param name="After">How long after the previous step (positive, at most one day).</param>
/// <param name="Action">What to do then (not <see cref="PanicAction.LogOnly"/>).</param>
public readonly record struct PanicStep(TimeSpan After, PanicAction Action)
{
    /// <summary>The step in configuration syntax, for example <c>30s coredump-restart</c>.</summary>
    /// <returns>The delay and the action's libvirt-style name.</returns>
    public override string ToString() => Policy.EscalationText.Step(After, PolicyNames.Of(Action));
}
