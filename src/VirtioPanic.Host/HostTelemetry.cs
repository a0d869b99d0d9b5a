using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Exporter;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using VirtioPanic.OpenTelemetry;

namespace VirtioPanic.Host;

// Section Telemetry: OTLP export of the meters, the log lines, the handled events and the action spans, off unless
// an endpoint is configured (Telemetry:Otlp:Endpoint, else the standard OTEL_EXPORTER_OTLP_ENDPOINT).
//   Telemetry:Otlp:Endpoint     absolute http(s) URI of the collector (with http/protobuf, the base: /v1/metrics, /v1/logs and /v1/traces are appended)
//   Telemetry:Otlp:Protocol     http/protobuf (default) or grpc
//   Telemetry:Otlp:ServiceName  service.name of the exported resource (default virtiopanic)
internal sealed record HostTelemetry(Uri? Endpoint, bool FromEnvironment, OtlpExportProtocol Protocol, string ServiceName)
{
    internal const string StandardEndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT";
    private static readonly string[] s_otlpKeys = ["Endpoint", "Protocol", "ServiceName"];

    internal bool Enabled => Endpoint is not null;

    // Reads and checks the section; each mistake is one line naming the key, the value and what is allowed.
    internal static HostTelemetry Read(IConfiguration configuration, List<string> failures)
    {
        IConfigurationSection section = configuration.GetSection("Telemetry");
        foreach (IConfigurationSection child in section.GetChildren())
        {
            if (child.Key != "Otlp")
            {
                failures.Add($"{child.Path}: unknown key; the keys of Telemetry are: Otlp.");
            }
        }

        IConfigurationSection otlp = section.GetSection("Otlp");
        foreach (IConfigurationSection child in otlp.GetChildren())
        {
            if (!s_otlpKeys.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                failures.Add($"{child.Path}: unknown key; the keys of Telemetry:Otlp are: {string.Join(", ", s_otlpKeys)}.");
            }
        }

        string? configured = otlp["Endpoint"];
        string? standard = Environment.GetEnvironmentVariable(StandardEndpointVariable);
        bool fromEnvironment = string.IsNullOrEmpty(configured) && !string.IsNullOrEmpty(standard);
        string? text = fromEnvironment ? standard : configured;
        Uri? endpoint = null;
        if (!string.IsNullOrEmpty(text))
        {
            if (Uri.TryCreate(text, UriKind.Absolute, out Uri? uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps) && string.IsNullOrEmpty(uri.Query))
            {
                endpoint = uri;
            }
            else
            {
                string key = fromEnvironment ? StandardEndpointVariable : "Telemetry:Otlp:Endpoint";
                failures.Add($"{key} = '{text}': not an absolute http:// or https:// URI without a query (e.g. http://127.0.0.1:4318).");
            }
        }

        OtlpExportProtocol protocol = OtlpExportProtocol.HttpProtobuf;
        switch (otlp["Protocol"])
        {
            case null or "" or "http/protobuf":
                break;
            case "grpc":
                protocol = OtlpExportProtocol.Grpc;
                break;
            case string other:
                failures.Add($"Telemetry:Otlp:Protocol = '{other}': allowed values are http/protobuf, grpc.");
                break;
        }

        string serviceName = otlp["ServiceName"] is { Length: > 0 } name ? name : "virtiopanic";
        return new HostTelemetry(endpoint, fromEnvironment, protocol, serviceName);
    }

    // The OTLP exporters for metrics, logs and traces, with AddVirtioPanicTelemetry (meters, log lines, handled events, action spans).
    internal void AddTo(IServiceCollection services)
    {
        if (!Enabled)
        {
            return;
        }

        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(ServiceName))
            .AddVirtioPanicTelemetry()
            .WithMetrics(m => m.AddOtlpExporter(o => Configure(o, "v1/metrics")))
            .WithLogging(l => l.AddOtlpExporter(o => Configure(o, "v1/logs")))
            .WithTracing(t => t.AddOtlpExporter(o => Configure(o, "v1/traces")));
    }

    private void Configure(OtlpExporterOptions options, string signalPath)
    {
        options.Protocol = Protocol;
        if (FromEnvironment)
        {
            // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT itself and appends the signal's path.
            return;
        }

        // Set in code, the endpoint is taken as it is: with http/protobuf it must name the signal's path.
        options.Endpoint = Protocol == OtlpExportProtocol.HttpProtobuf
            ? new Uri(Endpoint!.AbsoluteUri.TrimEnd('/') + "/" + signalPath)
            : Endpoint!;
    }
}
