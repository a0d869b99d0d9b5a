using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using VirtioPanic.Hosting;

namespace VirtioPanic.OpenTelemetry.Tests;

public sealed class VirtioPanicOpenTelemetryExtensionsTests
{
    [Test]
    public async Task AddVirtioPanicTelemetry_ExpiryAndPanic_MetersReachTheExporterWithTheirTags()
    {
        await using TelemetryRig rig = await TelemetryRig.StartAsync("otel-metrics");
        rig.BootAndArm();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
        rig.FlushMetrics();
        (Dictionary<string, object?> Tags, double Value)[] armed = Points(rig, "virtiopanic.devices.armed");
        (Dictionary<string, object?> Tags, double Value)[] timeLeft = Points(rig, "virtiopanic.watchdog.time_left.min");

        rig.Time.Advance(TimeSpan.FromSeconds(6));
        await rig.NextAsync("WATCHDOG");
        rig.PanicWithUnknownBit();
        await rig.NextAsync("GUEST_PANICKED");
        Span<byte> misaligned = stackalloc byte[4];
        rig.Pci.ReadConfig(0x01, misaligned);
        rig.FlushMetrics();

        Assert.Multiple(() =>
        {
            Assert.That(armed.Single().Value, Is.EqualTo(1), "one armed device");
            Assert.That(timeLeft.Single().Value, Is.EqualTo(5).Within(0.001), "the whole 5 s timeout left on the fake clock");
            Assert.That(Points(rig, "virtiopanic.events").Select(p => ((string)p.Tags["kind"]!, p.Value)),
                Is.SupersetOf(new[] { ("WATCHDOG", 1.0), ("GUEST_PANICKED", 1.0) }));
            Assert.That(Points(rig, "virtiopanic.actions").Select(p => ((string)p.Tags["operation"]!, (string)p.Tags["outcome"]!)),
                Does.Contain(("reset", "succeeded")));
            Assert.That(Points(rig, "virtiopanic.device.protocol_errors").Where(p => Equals(p.Tags["device"], "otel-metrics")).Select(p => ((string)p.Tags["kind"]!, p.Value)),
                Is.EqualTo(new[] { ("unknown_panic_events", 1.0) }));
            Assert.That(Points(rig, "virtiopanic.transport.invalid_accesses").Select(p => ((string)p.Tags["transport"]!, (string)p.Tags["kind"]!, (string)p.Tags["region"]!)),
                Does.Contain(("virtio-pci", "misaligned", "pci_config_space")));
        });
    }

    [Test]
    public async Task AddVirtioPanicTelemetry_HandledEvents_OneLogRecordEachWithItsAttributesAndJson()
    {
        await using TelemetryRig rig = await TelemetryRig.StartAsync("otel-logs");
        rig.BootAndArm();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
        rig.Time.Advance(TimeSpan.FromSeconds(6));
        await rig.NextAsync("WATCHDOG");
        rig.PanicWithUnknownBit();
        await rig.NextAsync("GUEST_PANICKED");
        await rig.StopAsync();

        HandledEvent[] expected = [.. rig.Handled];
        LogRecord[] records = [.. rig.Logs.Where(r => r.CategoryName == VirtioPanicTelemetry.EventsCategory)];
        Assert.That(expected.Select(e => e.Name), Is.SupersetOf(new[] { "VIRTIO_WDT_ARMED", "WATCHDOG", "GUEST_PANICKED" }));
        Assert.That(records, Has.Length.EqualTo(expected.Length), "one record per handled event");
        for (int i = 0; i < expected.Length; i++)
        {
            HandledEvent e = expected[i];
            LogRecord r = records[i];
            Dictionary<string, object?> attributes = r.Attributes!.ToDictionary(a => a.Key, a => a.Value);
            Assert.Multiple(() =>
            {
                Assert.That(attributes["virtiopanic.device.id"], Is.EqualTo("otel-logs"));
                Assert.That(attributes["virtiopanic.event.name"], Is.EqualTo(e.Name));
                Assert.That(attributes["virtiopanic.event.sequence"], Is.EqualTo(e.Sequence));
                Assert.That(attributes["virtiopanic.policy.action"], Is.EqualTo(e.PolicyAction));
                Assert.That(attributes["virtiopanic.outcome"], Is.EqualTo(e.Outcome));
                Assert.That(attributes["virtiopanic.journaled"], Is.EqualTo(e.Journaled));
                Assert.That(r.Body, Is.EqualTo(e.Json), "the body is the QMP-shaped JSON");
                Assert.That(r.EventId.Name, Is.EqualTo(e.Name));
                Assert.That(r.LogLevel, Is.EqualTo(Microsoft.Extensions.Logging.LogLevel.Information));
            });
        }

        Assert.Multiple(() =>
        {
            LogRecord panic = records.Single(r => r.EventId.Name == "GUEST_PANICKED");
            Assert.That(panic.Attributes!.Single(a => a.Key == "virtiopanic.policy.action").Value, Is.EqualTo("restart"));
            Assert.That((string?)panic.Body, Does.Contain("\"event\":\"GUEST_PANICKED\""));
            LogRecord expiry = records.Single(r => r.EventId.Name == "WATCHDOG");
            Assert.That((string?)expiry.Body, Does.Contain("\"action\":\"reset\""));
        });
    }

    [Test]
    public async Task AddVirtioPanicTelemetry_PanicWithRestart_ExportsOneActionSpanWithItsCalls()
    {
        await using TelemetryRig rig = await TelemetryRig.StartAsync("otel-spans");
        rig.BootAndArm();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
        rig.PanicWithUnknownBit();
        HandledEvent panic = await rig.NextAsync("GUEST_PANICKED");
        await rig.StopAsync();

        System.Diagnostics.Activity[] spans = [.. rig.Spans.Where(s => s.OperationName == "virtiopanic.action" && Equals(s.GetTagItem("virtiopanic.device.id"), "otel-spans"))];
        Assert.That(spans, Has.Length.EqualTo(1), "one span: the panic's restart (arming makes no VM-control call)");
        System.Diagnostics.Activity span = spans[0];
        Assert.Multiple(() =>
        {
            Assert.That(span.Source.Name, Is.EqualTo(PolicyServiceMetrics.ActivitySourceName));
            Assert.That(span.GetTagItem("virtiopanic.event.name"), Is.EqualTo("GUEST_PANICKED"));
            Assert.That(span.GetTagItem("virtiopanic.event.sequence"), Is.EqualTo(panic.Sequence));
            Assert.That(span.GetTagItem("virtiopanic.policy.action"), Is.EqualTo("restart"));
            Assert.That(span.Events.Select(e => (e.Name, e.Tags.Single(t => t.Key == "virtiopanic.outcome").Value)), Is.EqualTo(new[] { ("reset", (object?)"succeeded") }));
            Assert.That(span.Status, Is.EqualTo(System.Diagnostics.ActivityStatusCode.Ok));
        });
    }

    [Test]
    public void MeterNames_AreTheLibrariesPublicConstants()
    {
        Assert.That(VirtioPanicTelemetry.MeterNames, Is.EqualTo(new[] { "VirtioPanic.Device", "VirtioPanic.Transport", "VirtioPanic.VhostUser", "VirtioPanic.Hosting" }));
    }

    // Every point of the named metric in the last export, with its tags and value (sum or gauge).
    private static (Dictionary<string, object?> Tags, double Value)[] Points(TelemetryRig rig, string name)
    {
        var points = new List<(Dictionary<string, object?>, double)>();
        foreach (Metric metric in rig.Metrics.Where(m => m.Name == name))
        {
            foreach (ref readonly MetricPoint point in metric.GetMetricPoints())
            {
                var tags = new Dictionary<string, object?>();
                foreach (KeyValuePair<string, object?> tag in point.Tags)
                {
                    tags[tag.Key] = tag.Value;
                }

                double value = metric.MetricType switch
                {
                    MetricType.LongSum or MetricType.LongSumNonMonotonic => point.GetSumLong(),
                    MetricType.DoubleSum or MetricType.DoubleSumNonMonotonic => point.GetSumDouble(),
                    MetricType.LongGauge => point.GetGaugeLastValueLong(),
                    MetricType.DoubleGauge => point.GetGaugeLastValueDouble(),
                    _ => point.GetHistogramCount(),
                };
                points.Add((tags, value));
            }
        }

        return [.. points];
    }
}
