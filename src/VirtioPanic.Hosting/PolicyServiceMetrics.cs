using System.Diagnostics;

namespace VirtioPanic.Hosting;

/// <summary>
/// Where the policy service's telemetry is: the meter <see cref="MeterName"/>, created through the
/// host's <see cref="System.Diagnostics.Metrics.IMeterFactory"/> when one is registered (README.md
/// "Telemetry" lists every instrument with its unit and tags), and the activity source
/// <see cref="ActivitySourceName"/> of the action spans.
/// </summary>
public static class PolicyServiceMetrics
{
    /// <summary>The name of the policy service's meter: <c>VirtioPanic.Hosting</c>.</summary>
    public const string MeterName = "VirtioPanic.Hosting";

    /// <summary>
    /// The name of the policy service's activity source: <c>VirtioPanic.Hosting</c>. It starts one
    /// span, <c>virtiopanic.action</c>, per decision that makes VM-control calls (tags
    /// <c>virtiopanic.device.id</c>, <c>virtiopanic.event.name</c>, <c>virtiopanic.event.sequence</c>,
    /// <c>virtiopanic.policy.action</c>; one event per call, in order; status Error when the last call failed).
    /// </summary>
    public const string ActivitySourceName = "VirtioPanic.Hosting";

    internal static readonly ActivitySource Activities = new(ActivitySourceName, typeof(PolicyServiceMetrics).Assembly.GetName().Version?.ToString());
}
