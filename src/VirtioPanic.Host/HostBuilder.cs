using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
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
        });
        builder.Services.AddVirtioPanic();
        return builder;
    }

    internal static WatchdogDeviceOptions DeviceOptions(IConfiguration configuration)
    {
        var options = new WatchdogDeviceOptions();
        configuration.GetSection("Device").Bind(options);
        options.Validate();
        return options;
    }

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
