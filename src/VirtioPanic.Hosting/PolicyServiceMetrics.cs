namespace VirtioPanic.Hosting;

/// <summary>
/// Where the policy service's instruments are: the meter <see cref="MeterName"/>, created through the
/// host's <see cref="System.Diagnostics.Metrics.IMeterFactory"/> when one is registered. README.md
/// "Telemetry" lists every instrument with its unit and tags.
/// </summary>
public static class PolicyServiceMetrics
{
    /// <summary>The name of the policy service's meter: <c>VirtioPanic.Hosting</c>.</summary>
    public const string MeterName = "VirtioPanic.Hosting";
}
