using System.Diagnostics.Metrics;
using VirtioPanic.Metrics;

namespace VirtioPanic.Device;

/// <summary>
/// The device's instruments (System.Diagnostics.Metrics), all on the meter <see cref="MeterName"/>;
/// README.md "Telemetry" lists each one with its unit and tags. Every instrument counts a rare
/// event (a guest error, an event the host did not take in time, a queue stop, a fault), never an
/// operation of the ring hot path, and tags it with the device's id and a kind from a fixed set.
/// </summary>
public static class WatchdogDeviceMetrics
{
    /// <summary>The name of the device's meter: <c>VirtioPanic.Device</c>. Listen to it with a <see cref="MeterListener"/> or add it to an OpenTelemetry meter provider.</summary>
    public const string MeterName = "VirtioPanic.Device";

    // One meter for the process (devices are created without DI); the device tag tells them apart.
    private static readonly Meter s_meter = new(MeterName, typeof(WatchdogDeviceMetrics).Assembly.GetName().Version?.ToString());
    private static readonly string[] s_errors = MetricTagNames.Of<WatchdogProtocolError>();
    private static readonly string[] s_kinds = MetricTagNames.Of<WatchdogEventKind>();
    private static readonly string[] s_queues = ["watchdogq", "eventq", "noticeq"];

    internal static readonly Counter<long> ProtocolErrors = s_meter.CreateCounter<long>(
        "virtiopanic.device.protocol_errors", "{error}", "Guest protocol errors, by kind (WatchdogProtocolError)");

    internal static readonly Counter<long> QueueErrors = s_meter.CreateCounter<long>(
        "virtiopanic.device.queue_errors", "{error}", "Queues stopped with DEVICE_NEEDS_RESET (ring errors, oversized chains, rejected heartbeats), by queue and kind");

    internal static readonly Counter<long> EventsCoalesced = s_meter.CreateCounter<long>(
        "virtiopanic.device.events.coalesced", "{event}", "Critical events coalesced because the host did not drain the device's events, by kind");

    internal static readonly Counter<long> EventsDropped = s_meter.CreateCounter<long>(
        "virtiopanic.device.events.dropped", "{event}", "Non-critical events dropped because the host did not drain the device's events, by kind");

    internal static readonly Counter<long> Faults = s_meter.CreateCounter<long>(
        "virtiopanic.device.faults", "{fault}", "Unexpected exceptions the device contained, by where (worker: its queue stopped with DEVICE_NEEDS_RESET; timer: retried)");

    internal static KeyValuePair<string, object?> DeviceTag(string deviceId) => new("device", deviceId);

    internal static KeyValuePair<string, object?> KindTag(WatchdogProtocolError error) => new("kind", MetricTagNames.Lookup(s_errors, (int)error));

    internal static KeyValuePair<string, object?> KindTag(WatchdogEventKind kind) => new("kind", MetricTagNames.Lookup(s_kinds, (int)kind));

    internal static KeyValuePair<string, object?> QueueTag(int queueIndex) => new("queue", MetricTagNames.Lookup(s_queues, queueIndex));
}
