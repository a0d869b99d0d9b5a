using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using VirtioPanic.Hosting;

namespace VirtioPanic.OpenTelemetry.Tests;

// The package readme's example, verbatim: it builds a host whose OpenTelemetry set-up has the meter
// provider, the logger provider and the handled-event exporter (it is not started: no collector here).
public sealed class ReadmeExampleTests
{
    [Test]
    public void PackageReadme_Example_WiresMetersLogsAndTheEventExporter()
    {
        // README-SNIPPET: src/VirtioPanic.OpenTelemetry/README.md
        HostApplicationBuilder builder = Host.CreateApplicationBuilder();
        builder.Services.AddVirtioPanic();
        builder.Services.AddOpenTelemetry()
            .AddVirtioPanicTelemetry()
            .WithMetrics(metrics => metrics.AddOtlpExporter())
            .WithLogging(logs => logs.AddOtlpExporter());
        using IHost host = builder.Build();
        // END-README-SNIPPET

        Assert.Multiple(() =>
        {
            Assert.That(host.Services.GetService<MeterProvider>(), Is.Not.Null);
            Assert.That(host.Services.GetServices<Microsoft.Extensions.Logging.ILoggerProvider>().OfType<OpenTelemetryLoggerProvider>(), Is.Not.Empty);
            Assert.That(host.Services.GetServices<IHostedService>().OfType<HandledEventExporter>().Count(), Is.EqualTo(1));
            Assert.That(host.Services.GetService<PolicyService>(), Is.Not.Null);
        });
    }
}
