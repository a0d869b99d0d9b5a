using Serilog.Core;
using Serilog.Events;

namespace VirtioPanic.Host;

// Adds a short "Origin" property (policy, device, vm, guest, transport, vhost, host) for the console template.
internal sealed class SourceEnricher : ILogEventEnricher
{
    public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
    {
        string context = logEvent.Properties.TryGetValue("SourceContext", out LogEventPropertyValue? value) && value is ScalarValue { Value: string s } ? s : string.Empty;
        string source = context switch
        {
            "guest" => "guest",
            _ when context.StartsWith("VirtioPanic.Hosting", StringComparison.Ordinal) => "policy",
            _ when context.StartsWith("VirtioPanic.Device", StringComparison.Ordinal) => "device",
            _ when context.StartsWith("VirtioPanic.Host.Demo", StringComparison.Ordinal) => "vm",
            _ when context.StartsWith("VirtioPanic.Transport", StringComparison.Ordinal) => "transport",
            _ when context.StartsWith("VirtioPanic.VhostUser", StringComparison.Ordinal) => "vhost",
            _ => "host",
        };
        logEvent.AddPropertyIfAbsent(propertyFactory.CreateProperty("Origin", source));
    }
}
