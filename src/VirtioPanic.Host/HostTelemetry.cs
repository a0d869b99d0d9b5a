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
//   Telemetry:Otlp:Protocol     http/protobuf or grpc; unset: OTEL_EXPORTER_OTLP_PROTOCOL when the endpoint came from
//                               OTEL_EXPORTER_OTLP_ENDPOINT, else http/protobuf
//   Telemetry:Otlp:ServiceName  service.name of the exported resource (default virtiopanic)
internal sealed record HostTelemetry(Uri? Endpoint, OtlpExportProtocol Protocol, string ServiceName)
{
    internal const string StandardEndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT";
    internal const string StandardProtocolVariable = "OTEL_EXPORTER_OTLP_PROTOCOL";
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

        // The protocol: Telemetry:Otlp:Protocol, else (with the standard endpoint) OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.
        string? envProtocol = Environment.GetEnvironmentVariable(StandardProtocolVariable);
        (string protocolKey, string? protocolText) = !string.IsNullOrEmpty(otlp["Protocol"]) ? ("Telemetry:Otlp:Protocol", otlp["Protocol"])
            : fromEnvironment && !string.IsNullOrEmpty(envProtocol) ? (StandardProtocolVariable, envProtocol)
            : ("Telemetry:Otlp:Protocol", null);
        OtlpExportProtocol protocol = OtlpExportProtocol.HttpProtobuf;
        switch (protocolText)
        {
            case null or "" or "http/protobuf":
                break;
            case "grpc":
                protocol = OtlpExportProtocol.Grpc;
                break;
            default:
                failures.Add($"{protocolKey} = '{protocolText}': allowed values are http/protobuf, grpc.");
                break;
        }

        string serviceName = otlp["ServiceName"] is { Length: > 0 } name ? name : "virtiopanic";
        return new HostTelemetry(endpoint, protocol, serviceName);
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

    // The exporter would read the OTEL_* variables from the host's configuration, which holds only
    // VIRTIOPANIC_-prefixed ones: the endpoint and protocol are set here whichever way they came,
    // and with http/protobuf the signal's path is appended as the OTLP specification says for the
    // standard variable (an endpoint set in code is otherwise taken as it is).
    private void Configure(OtlpExporterOptions options, string signalPath)
    {
        options.Protocol = Protocol;
        options.Endpoint = Protocol == OtlpExportProtocol.HttpProtobuf
            ? new Uri(Endpoint!.AbsoluteUri.TrimEnd('/') + "/" + signalPath)
            : Endpoint!;
    }
}
