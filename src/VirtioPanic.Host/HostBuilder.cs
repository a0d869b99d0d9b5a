using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Serilog;
using Serilog.Formatting.Json;
using Serilog.Sinks.SystemConsole.Themes;
using VirtioPanic.Device;
using VirtioPanic.Hosting;

namespace VirtioPanic.Host;

// Composition shared by the demo and serve: configuration (appsettings.json next to the program,
// VIRTIOPANIC_-prefixed environment variables, then command-line overrides), Serilog, the policy service.
internal static class HostBuilder
{
    internal const string ConsoleTemplate = "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Origin,-6} {Message:lj}{NewLine}{Exception}";

    internal static HostApplicationBuilder Create(IDictionary<string, string?> overrides, bool jsonLogs, bool interactive)
    {
        HostApplicationBuilder builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings { ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration
            .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true)
            .AddEnvironmentVariables("VIRTIOPANIC_")
            .AddInMemoryCollection(overrides);
        // Section Telemetry (HostTelemetry): its mistakes are reported by Build with the others.
        HostTelemetry telemetry = HostTelemetry.Read(builder.Configuration, []);
        builder.Services.AddSerilog((_, logger) =>
        {
            logger.ReadFrom.Configuration(builder.Configuration).Enrich.FromLogContext().Enrich.With<SourceEnricher>();
            if (jsonLogs)
            {
                logger.WriteTo.Console(new JsonFormatter(renderMessage: true));
            }
            else
            {
                // On a terminal each line first clears the countdown line (ESC [ K).
                logger.WriteTo.Console(
                    outputTemplate: (interactive ? "\r\u001b[K" : string.Empty) + ConsoleTemplate,
                    theme: interactive ? AnsiConsoleTheme.Code : ConsoleTheme.None,
                    formatProvider: System.Globalization.CultureInfo.InvariantCulture);
            }
        }, writeToProviders: telemetry.Enabled);   // with OTLP on, every log line reaches OpenTelemetry's provider too
        telemetry.AddTo(builder.Services);
        builder.Services.AddVirtioPanic();
        // The Device section is bound and validated by the library too, at start, before the journal opens.
        builder.Services.AddWatchdogDeviceOptions();
        return builder;
    }

    // Builds the host and validates every options section now (what StartAsync would do first), so
    // that a configuration mistake stops the program before anything starts or logs: one
    // OptionsValidationException carrying every failure of every section, those the caller found
    // in its own sections (Demo) included. Program prints them, a line each.
    internal static IHost Build(HostApplicationBuilder builder, IReadOnlyList<string> failures)
    {
        IHost host = builder.Build();
        var all = new List<string>(failures);
        HostTelemetry.Read(builder.Configuration, all);   // an invalid section added no exporter
        try
        {
            host.Services.GetService<IStartupValidator>()?.Validate();
        }
        catch (Exception ex) when (ConfigurationFailures(ex, all))
        {
        }

        if (all.Count > 0)
        {
            host.Dispose();
            throw new OptionsValidationException(Options.DefaultName, typeof(HostBuilder), all);
        }

        return host;
    }

    // Adds the failure lines an options exception carries (one section's, or several sections' in
    // an AggregateException); false for any other exception, which is a bug and keeps its stack trace.
    internal static bool ConfigurationFailures(Exception exception, List<string> failures)
    {
        switch (exception)
        {
            case OptionsValidationException options:
                failures.AddRange(options.Failures.Select(f => f.ReplaceLineEndings(" ")));
                return true;
            case AggregateException aggregate when aggregate.InnerExceptions.All(e => e is OptionsValidationException or AggregateException):
                foreach (Exception inner in aggregate.InnerExceptions)
                {
                    ConfigurationFailures(inner, failures);
                }

                return true;
            default:
                return false;
        }
    }

    // The Device section, bound and validated when the host started (AddWatchdogDeviceOptions).
    internal static WatchdogDeviceOptions DeviceOptions(IHost host) => host.Services.GetRequiredService<IOptions<WatchdogDeviceOptions>>().Value;

    // serve's vhost-user settings: section VhostUser (RequireSealedMemory, SetupTimeout).
    internal static VhostUser.VhostUserBackendOptions BackendOptions(IConfiguration configuration)
    {
        IConfigurationSection section = configuration.GetSection("VhostUser");
        TimeSpan setupTimeout = section.GetValue<TimeSpan?>("SetupTimeout") ?? new VhostUser.VhostUserBackendOptions().SetupTimeout;
        return new VhostUser.VhostUserBackendOptions
        {
            RequireSealedMemory = section.GetValue<bool>("RequireSealedMemory"),
            SetupTimeout = setupTimeout,
        };
    }

    internal static string DefaultStateDirectory() => Path.Combine(Path.GetTempPath(), "virtiopanic");

    // Unless configured (command line, environment, appsettings.json), each instance gets its own
    // journal, named by what identifies it across restarts: the device id, and for serve the
    // socket (<state>/serve-wdt0-vm1.sock.jsonl), so two instances never write one file and a
    // restarted one finds its own.
    internal static void SetDefaultJournalPath(ConfigurationManager configuration, string kind, string? instance)
    {
        if (!string.IsNullOrEmpty(configuration["VirtioPanic:JournalPath"]))
        {
            return;
        }

        string deviceId = configuration["Device:DeviceId"] is { Length: > 0 } id ? id : new WatchdogDeviceOptions().DeviceId;
        string name = kind + "-" + FileNamePart(deviceId) + (instance is null ? string.Empty : "-" + FileNamePart(instance)) + ".jsonl";
        configuration["VirtioPanic:JournalPath"] = Path.Combine(DefaultStateDirectory(), name);
    }

    private static string FileNamePart(string value) => string.Concat(value.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_'));

    internal static ILoggerFactory Loggers(IHost host) => host.Services.GetRequiredService<ILoggerFactory>();
}
