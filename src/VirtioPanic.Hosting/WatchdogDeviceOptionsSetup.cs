using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

// Binds WatchdogDeviceOptions from the "Device" section of the host's IConfiguration (when there is
// one). Unlike the binder, it converts every key itself so that each failure names the key, the
// value and what the key accepts, and it refuses keys the options do not have (a misspelled key
// would otherwise leave the default in force without a word). It does not throw: the failures are
// kept with the options instance (BindingFailures) and WatchdogDeviceOptionsValidator reports them
// with its range checks of the other keys, so every mistake of the section is reported at once,
// with the other sections' (ValidateOnStart).
internal sealed class WatchdogDeviceOptionsSetup : IConfigureOptions<WatchdogDeviceOptions>
{
    internal static readonly string[] Keys = ["DeviceId", "Features", "DefaultTimeout", "MinTimeout", "MaxTimeout", "ResumeGrace", "EventCapacity", "StartPaused", "VcpuCount", "VcpuStallTimeout", "VcpuStallSecondStage"];

    private const string TimeSpanForm = "a time span [d.]hh:mm:ss[.fffffff] (for example 00:00:20 or 00:00:00.500)";

    private readonly IServiceProvider _services;

    public WatchdogDeviceOptionsSetup(IServiceProvider services) => _services = services;

    public void Configure(WatchdogDeviceOptions options)
    {
        IConfiguration? configuration = _services.GetService<IConfiguration>();
        if (configuration is null)
        {
            return;
        }

        var failures = new List<(string Key, string Message)>();
        Bind(options, configuration.GetSection(WatchdogDeviceServiceCollectionExtensions.SectionName), failures);
        if (failures.Count > 0)
        {
            BindingFailures.AddOrUpdate(options, failures);
        }
    }

    // The keys that did not bind (with their lines), per options instance, for the validator.
    internal static ConditionalWeakTable<WatchdogDeviceOptions, List<(string Key, string Message)>> BindingFailures { get; } = new();

    internal static void Bind(WatchdogDeviceOptions options, IConfigurationSection section, List<(string Key, string Message)> failures)
    {
        foreach (IConfigurationSection child in section.GetChildren())
        {
            string? value = child.Value;
            if (value is null && child.GetChildren().Any())
            {
                failures.Add((child.Key, Keys.Contains(child.Key, StringComparer.OrdinalIgnoreCase)
                    ? $"{child.Path}: must be a single value, not a section."
                    : Unknown(child, section)));
                continue;
            }

            switch (child.Key.ToUpperInvariant())
            {
                case "DEVICEID":
                    options.DeviceId = value ?? string.Empty;
                    break;
                case "FEATURES":
                    if (TryParseFeatures(value, out WatchdogFeatures features))
                    {
                        options.Features = features;
                    }
                    else
                    {
                        failures.Add((child.Key, $"{child.Path} = '{value}': not a feature list; allowed: names from {string.Join(", ", Enum.GetNames<WatchdogFeatures>())}, separated by commas."));
                    }

                    break;
                case "DEFAULTTIMEOUT":
                    options.DefaultTimeout = TimeSpanOr(child, options.DefaultTimeout, failures);
                    break;
                case "MINTIMEOUT":
                    options.MinTimeout = TimeSpanOr(child, options.MinTimeout, failures);
                    break;
                case "MAXTIMEOUT":
                    options.MaxTimeout = TimeSpanOr(child, options.MaxTimeout, failures);
                    break;
                case "RESUMEGRACE":
                    options.ResumeGrace = TimeSpanOr(child, options.ResumeGrace, failures);
                    break;
                case "EVENTCAPACITY":
                    options.EventCapacity = IntOr(child, options.EventCapacity, $"{WatchdogDeviceOptionsValidator.MinEventCapacity} or more", failures);
                    break;
                case "STARTPAUSED":
                    if (bool.TryParse(value, out bool paused))
                    {
                        options.StartPaused = paused;
                    }
                    else
                    {
                        failures.Add((child.Key, $"{child.Path} = '{value}': allowed: true or false."));
                    }

                    break;
                case "VCPUCOUNT":
                    options.VcpuCount = IntOr(child, options.VcpuCount, $"0 (no per-vCPU stall detection) to {WatchdogDeviceOptions.MaxVcpuCount}", failures);
                    break;
                case "VCPUSTALLTIMEOUT":
                    options.VcpuStallTimeout = TimeSpanOr(child, options.VcpuStallTimeout, failures);
                    break;
                case "VCPUSTALLSECONDSTAGE":
                    options.VcpuStallSecondStage = TimeSpanOr(child, options.VcpuStallSecondStage, failures);
                    break;
                default:
                    failures.Add((child.Key, Unknown(child, section)));
                    break;
            }
        }
    }

    private static string Unknown(IConfigurationSection child, IConfigurationSection section) =>
        $"{child.Path}{(child.Value is null ? string.Empty : $" = '{child.Value}'")}: unknown key; the keys of {section.Path} are: {string.Join(", ", Keys)}.";

    private static TimeSpan TimeSpanOr(IConfigurationSection child, TimeSpan current, List<(string Key, string Message)> failures)
    {
        if (TimeSpan.TryParse(child.Value, CultureInfo.InvariantCulture, out TimeSpan value))
        {
            return value;
        }

        failures.Add((child.Key, $"{child.Path} = '{child.Value}': not {TimeSpanForm}."));
        return current;
    }

    private static int IntOr(IConfigurationSection child, int current, string allowed, List<(string Key, string Message)> failures)
    {
        if (int.TryParse(child.Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value))
        {
            return value;
        }

        failures.Add((child.Key, $"{child.Path} = '{child.Value}': not a whole number; allowed: {allowed}."));
        return current;
    }

    // Names only ("Events, PanicConfig", "All", "None"): a number would hide which bits it means.
    private static bool TryParseFeatures(string? text, out WatchdogFeatures features)
    {
        features = WatchdogFeatures.None;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        foreach (string part in text.Split([',', '|'], StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (part.Length == 0 || char.IsAsciiDigit(part[0]) || part[0] is '-' or '+' || !Enum.TryParse(part, ignoreCase: true, out WatchdogFeatures one))
            {
                return false;
            }

            features |= one;
        }

        return true;
    }
}
