using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;

namespace VirtioPanic.Device.Tests;

// The device's instruments (WatchdogDeviceMetrics, README.md "Telemetry"): each rare event is
// counted once, tagged with this device's id and a kind from the fixed set. The meter is shared by
// every device of the process, so each test listens only to its own device's measurements.
public sealed class WatchdogDeviceMetricsTests
{
    [Test]
    public void RingError_CountedAsQueueErrorAndProtocolError_WithDeviceQueueAndKind()
    {
        using var recorder = new Recorder("metrics-ring");
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.None, new WatchdogDeviceOptions { DeviceId = "metrics-ring" });
        rig.PostChain(0, new DriverBuffer(rig.Buffer(8), 0, true));   // a zero-length heartbeat buffer: ring error

        rig.Device.Notify(0);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Context!.NeedsReset, Is.True);
            Assert.That(recorder.Tagged("virtiopanic.device.queue_errors", "queue", "kind"), Is.EqualTo(new[] { ("watchdogq", "ring_error") }));
            Assert.That(recorder.Tagged("virtiopanic.device.protocol_errors", "kind"), Is.EqualTo(new[] { "ring_error" }));
        });
    }

    [Test]
    public void FullChannel_CoalescedAndDroppedEvents_CountedByKind()
    {
        using var recorder = new Recorder("metrics-full");
        using var rig = new WatchdogRig(new WatchdogDeviceOptions { DeviceId = "metrics-full", EventCapacity = 8 });

        for (int i = 0; i < 50; i++)
        {
            rig.WriteConfig32(0x04, 0);   // boot_reason is read-only: a protocol error (non-critical)
            rig.WriteConfig32(0x08, 1);   // panic_events PANICKED (critical)
        }

        WatchdogDeviceStatus status = rig.Device.GetStatus();
        Assert.Multiple(() =>
        {
            Assert.That(status.CoalescedEvents, Is.GreaterThan(0));
            Assert.That(status.DroppedEvents, Is.GreaterThan(0));
            Assert.That(recorder.Tagged("virtiopanic.device.events.coalesced", "kind"), Has.Count.EqualTo(status.CoalescedEvents).And.All.EqualTo("guest_panicked"));
            Assert.That(recorder.Tagged("virtiopanic.device.events.dropped", "kind"), Has.Count.EqualTo(status.DroppedEvents).And.All.EqualTo("protocol_error"));
            Assert.That(recorder.Tagged("virtiopanic.device.protocol_errors", "kind"), Has.Count.EqualTo(50).And.All.EqualTo("invalid_config_write"));
        });
    }

    // Every long measurement of the device meter tagged device = the given id.
    private sealed class Recorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentQueue<(string Name, Dictionary<string, object?> Tags)> _seen = new();

        public Recorder(string deviceId)
        {
            _listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == WatchdogDeviceMetrics.MeterName)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            {
                var map = new Dictionary<string, object?>();
                foreach (KeyValuePair<string, object?> tag in tags)
                {
                    map[tag.Key] = tag.Value;
                }

                if (Equals(map.GetValueOrDefault("device"), deviceId))
                {
                    for (long i = 0; i < value; i++)
                    {
                        _seen.Enqueue((instrument.Name, map));
                    }
                }
            });
            _listener.Start();
        }

        public List<string> Tagged(string name, string tag) => [.. _seen.Where(s => s.Name == name).Select(s => (string)s.Tags[tag]!)];

        public List<(string, string)> Tagged(string name, string first, string second) =>
            [.. _seen.Where(s => s.Name == name).Select(s => ((string)s.Tags[first]!, (string)s.Tags[second]!))];

        public void Dispose() => _listener.Dispose();
    }
}
