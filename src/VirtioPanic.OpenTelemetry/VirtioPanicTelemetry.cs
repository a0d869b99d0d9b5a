using VirtioPanic.Device;
using VirtioPanic.Hosting;
using VirtioPanic.Transport;
using VirtioPanic.VhostUser;

namespace VirtioPanic.OpenTelemetry;

/// <summary>The names under which VirtioPanic reports: its meters and the log category of the handled events.</summary>
public static class VirtioPanicTelemetry
{
    /// <summary>
    /// The log category of the handled events exported as OpenTelemetry log records:
    /// <c>VirtioPanic.Events</c>. Each record's body is the event's QMP-shaped JSON
    /// (<see cref="HandledEvent.Json"/>), its event name the QMP-style name.
    /// </summary>
    public const string EventsCategory = "VirtioPanic.Events";

    /// <summary>Every VirtioPanic meter: <see cref="WatchdogDeviceMetrics.MeterName"/>, <see cref="TransportMetrics.MeterName"/>, <see cref="VhostUserMetrics.MeterName"/> and <see cref="PolicyServiceMetrics.MeterName"/>.</summary>
    public static IReadOnlyList<string> MeterNames { get; } =
        [WatchdogDeviceMetrics.MeterName, TransportMetrics.MeterName, VhostUserMetrics.MeterName, PolicyServiceMetrics.MeterName];
}
