using System.Diagnostics.Metrics;
using VirtioPanic.Metrics;

namespace VirtioPanic.Transport;

/// <summary>
/// The transports' instruments (System.Diagnostics.Metrics), all on the meter <see cref="MeterName"/>;
/// README.md "Telemetry" lists each one with its unit and tags. They count what a guest got wrong
/// and what the device threw, never a valid access: the register and doorbell fast paths record nothing.
/// </summary>
public static class TransportMetrics
{
    /// <summary>The name of the transports' meter: <c>VirtioPanic.Transport</c>. Listen to it with a <see cref="MeterListener"/> or add it to an OpenTelemetry meter provider.</summary>
    public const string MeterName = "VirtioPanic.Transport";

    private static readonly Meter s_meter = new(MeterName, typeof(TransportMetrics).Assembly.GetName().Version?.ToString());
    private static readonly string[] s_kinds = MetricTagNames.Of<InvalidAccessKind>();
    private static readonly string[] s_regions = MetricTagNames.Of<AccessRegion>();

    internal static readonly Counter<long> InvalidAccesses = s_meter.CreateCounter<long>(
        "virtiopanic.transport.invalid_accesses", "{access}", "Guest register accesses refused (read as zeros or dropped), by transport, kind (InvalidAccessKind) and region");

    internal static readonly Counter<long> DeviceFaults = s_meter.CreateCounter<long>(
        "virtiopanic.transport.device_faults", "{fault}", "Device exceptions the transport contained (DEVICE_NEEDS_RESET after DRIVER_OK), by transport and operation");

    internal static KeyValuePair<string, object?> TransportTag(string transport) => new("transport", transport);

    internal static KeyValuePair<string, object?> KindTag(InvalidAccessKind kind) => new("kind", MetricTagNames.Lookup(s_kinds, (int)kind));

    internal static KeyValuePair<string, object?> RegionTag(AccessRegion region) => new("region", MetricTagNames.Lookup(s_regions, (int)region));
}
