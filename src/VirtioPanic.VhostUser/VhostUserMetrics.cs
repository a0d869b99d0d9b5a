using System.Diagnostics.Metrics;
using VirtioPanic.Metrics;
using VirtioPanic.VhostUser.Protocol;

namespace VirtioPanic.VhostUser;

/// <summary>
/// The vhost-user back end's instruments (System.Diagnostics.Metrics), all on the meter
/// <see cref="MeterName"/>; README.md "Telemetry" lists each one with its unit and tags. They count
/// connections and what a front end got wrong; kicks and used-buffer notifications are counted
/// only in <see cref="VhostUserStatistics"/>, which also keeps these counts per back end.
/// </summary>
public static class VhostUserMetrics
{
    /// <summary>The name of the back end's meter: <c>VirtioPanic.VhostUser</c>. Listen to it with a <see cref="MeterListener"/> or add it to an OpenTelemetry meter provider.</summary>
    public const string MeterName = "VirtioPanic.VhostUser";

    private static readonly Meter s_meter = new(MeterName, typeof(VhostUserMetrics).Assembly.GetName().Version?.ToString());
    private static readonly string[] s_requests = MetricTagNames.Of<VhostUserRequest>();

    internal static readonly Counter<long> MessagesRefused = s_meter.CreateCounter<long>(
        "virtiopanic.vhost_user.messages.refused", "{message}", "Front-end messages refused (unsupported, malformed or invalid in the state), by request");

    internal static readonly Counter<long> Connections = s_meter.CreateCounter<long>(
        "virtiopanic.vhost_user.connections", "{connection}", "Front-end connections, by outcome (accepted, or refused while another front end was served)");

    internal static readonly UpDownCounter<long> ActiveConnections = s_meter.CreateUpDownCounter<long>(
        "virtiopanic.vhost_user.connections.active", "{connection}", "Front-end connections being served");

    internal static readonly Counter<long> DeviceFaults = s_meter.CreateCounter<long>(
        "virtiopanic.vhost_user.device_faults", "{fault}", "Device exceptions a session caught, by operation");

    internal static readonly KeyValuePair<string, object?> Accepted = new("outcome", "accepted");
    internal static readonly KeyValuePair<string, object?> Refused = new("outcome", "refused");

    // A request value no table names (a front end can send any u32) is tagged "unknown".
    internal static KeyValuePair<string, object?> RequestTag(VhostUserRequest request) =>
        new("request", MetricTagNames.Lookup(s_requests, unchecked((int)request)));

    internal static void DeviceFault(string operation) => DeviceFaults.Add(1, new KeyValuePair<string, object?>("operation", operation));
}
