using System.Diagnostics.Metrics;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

// The service's instruments on the "VirtioPanic.Hosting" meter:
//   virtiopanic.events            counter   {event}  tags device, kind (QMP-style name)
//   virtiopanic.actions           counter   {action} tags device, operation, outcome (succeeded | failed)
//   virtiopanic.action.duration   histogram s        tags device, operation, outcome
//   virtiopanic.action.latency    histogram s        tags device, kind: from the device's event to the first VM-control call
//   virtiopanic.storm_guard.trips counter   {trip}
//   virtiopanic.journal.failures  counter   {write}
//   virtiopanic.journal.degraded  gauge     {state}  1 while the journal does not work (the service runs degraded), else 0
//   virtiopanic.log.suppressed    counter   {line}   per-event log lines held back by the rate limit
//   virtiopanic.escalation.steps  counter   {step}   tags kind (watchdog | panic | vcpu-stall), action, outcome (ok | fallback | failed | logged)
//   virtiopanic.escalation.cancelled counter {escalation} tags kind, reason (recovered | panic | crash-loaded | driver-reset | shutdown | guest-reset | continue | superseded)
//   virtiopanic.devices.armed     gauge     {device} attached devices whose watchdog is armed
//   virtiopanic.watchdog.time_left.min gauge s      the smallest time left of an armed watchdog (none when none is armed)
internal sealed class VirtioPanicMetrics : IDisposable
{
    internal const string MeterName = PolicyServiceMetrics.MeterName;

    private readonly Meter _meter;
    private readonly Counter<long> _events;
    private readonly Counter<long> _actions;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _latency;
    private readonly Counter<long> _stormTrips;
    private readonly Counter<long> _journalFailures;
    private readonly Counter<long> _suppressed;
    private readonly Counter<long> _escalationSteps;
    private readonly Counter<long> _escalationCancelled;

    internal VirtioPanicMetrics(IMeterFactory? factory, Func<bool> journalDegraded, Func<IEnumerable<WatchdogDevice>>? devices = null)
    {
        _meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        _events = _meter.CreateCounter<long>("virtiopanic.events", "{event}", "Device events handled, by kind");
        _actions = _meter.CreateCounter<long>("virtiopanic.actions", "{action}", "VM-control calls made, by operation and outcome");
        _duration = _meter.CreateHistogram<double>("virtiopanic.action.duration", "s", "How long VM-control calls took");
        _latency = _meter.CreateHistogram<double>("virtiopanic.action.latency", "s", "From a device event to the first VM-control call it led to");
        _stormTrips = _meter.CreateCounter<long>("virtiopanic.storm_guard.trips", "{trip}", "Panic-storm guard trips");
        _journalFailures = _meter.CreateCounter<long>("virtiopanic.journal.failures", "{write}", "Journal writes that failed");
        _meter.CreateObservableGauge("virtiopanic.journal.degraded", () => journalDegraded() ? 1 : 0, "{state}", "1 while the journal does not work and the service runs degraded");
        _suppressed = _meter.CreateCounter<long>("virtiopanic.log.suppressed", "{line}", "Per-event log lines held back by the rate limit");
        _escalationSteps = _meter.CreateCounter<long>("virtiopanic.escalation.steps", "{step}", "Escalation steps carried out, by kind, action and outcome");
        _escalationCancelled = _meter.CreateCounter<long>("virtiopanic.escalation.cancelled", "{escalation}", "Escalations cancelled before their next step, by kind and reason");
        devices ??= () => [];
        _meter.CreateObservableGauge("virtiopanic.devices.armed", () => ArmedCount(devices()), "{device}", "Attached devices whose watchdog is armed");
        _meter.CreateObservableGauge("virtiopanic.watchdog.time_left.min", () => SmallestTimeLeft(devices()), "s", "The smallest run time left before an armed watchdog expires; no measurement while none is armed");
    }

    // The device tag is the attached device's id (bounded by the host's configuration).
    internal void Event(string deviceId, WatchdogEventKind kind) =>
        _events.Add(1, new KeyValuePair<string, object?>("device", deviceId), new KeyValuePair<string, object?>("kind", QmpEvents.NameOf(kind)));

    internal void Action(string deviceId, VmOperation operation, bool succeeded, TimeSpan duration)
    {
        var device = new KeyValuePair<string, object?>("device", deviceId);
        var op = new KeyValuePair<string, object?>("operation", PolicyNames.Of(operation));
        var outcome = new KeyValuePair<string, object?>("outcome", succeeded ? "succeeded" : "failed");
        _actions.Add(1, device, op, outcome);
        _duration.Record(duration.TotalSeconds, device, op, outcome);
    }

    internal void Latency(string deviceId, WatchdogEventKind kind, TimeSpan latency) =>
        _latency.Record(Math.Max(latency.TotalSeconds, 0), new KeyValuePair<string, object?>("device", deviceId), new KeyValuePair<string, object?>("kind", QmpEvents.NameOf(kind)));

    internal void StormTrip() => _stormTrips.Add(1);

    internal void JournalFailure() => _journalFailures.Add(1);

    internal void Suppressed() => _suppressed.Add(1);

    internal void EscalationStep(EscalationKind kind, string action, string outcome) => _escalationSteps.Add(
        1,
        new KeyValuePair<string, object?>("kind", Policy.PolicyEngine.KindName(kind)),
        new KeyValuePair<string, object?>("action", action),
        new KeyValuePair<string, object?>("outcome", outcome));

    internal void EscalationCancelled(EscalationKind kind, string reason) => _escalationCancelled.Add(
        1,
        new KeyValuePair<string, object?>("kind", Policy.PolicyEngine.KindName(kind)),
        new KeyValuePair<string, object?>("reason", reason));

    public void Dispose() => _meter.Dispose();

    // The gauges read each device's status when a collector asks (not on any device path).
    private static int ArmedCount(IEnumerable<WatchdogDevice> devices)
    {
        int armed = 0;
        foreach (WatchdogDevice device in devices)
        {
            armed += device.GetStatus().Armed ? 1 : 0;
        }

        return armed;
    }

    private static IEnumerable<Measurement<double>> SmallestTimeLeft(IEnumerable<WatchdogDevice> devices)
    {
        TimeSpan? smallest = null;
        foreach (WatchdogDevice device in devices)
        {
            if (device.GetStatus() is { Armed: true, TimeLeft: TimeSpan left } && (smallest is null || left < smallest))
            {
                smallest = left;
            }
        }

        return smallest is TimeSpan s ? [new Measurement<double>(s.TotalSeconds)] : [];
    }
}
