using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace VirtioPanic.Hosting;

// Binds VirtioPanicOptions from the "VirtioPanic" section of the host's IConfiguration (when there
// is one). Each Devices entry starts from the bound Policy and overrides only the keys it sets. A
// key the options do not have fails with its full path, as a value that does not convert does
// (the binder's own message names the path). Failures are OptionsValidationExceptions, so the
// host's start-up validation reports them with the other sections' (a host prints their lines).
internal sealed class VirtioPanicOptionsSetup : IConfigureOptions<VirtioPanicOptions>
{
    private static readonly string[] s_rootKeys = ["JournalPath", "JournalDurability", "JournalMaxFileSize", "JournalMaxFiles", "DumpDirectory", "ActionTimeout", "RecoveryTimeout", "InlinePanicHandling", "Policy", "Devices"];
    private static readonly string[] s_policyKeys = ["OnPanic", "OnWatchdog", "PanicGracePeriod", "CrashKernelDeadline", "OnCrashKernelTimeout", "StormThreshold", "StormWindow"];

    private readonly IServiceProvider _services;

    public VirtioPanicOptionsSetup(IServiceProvider services) => _services = services;

    public void Configure(VirtioPanicOptions options)
    {
        IConfiguration? configuration = _services.GetService<IConfiguration>();
        if (configuration is null)
        {
            return;
        }

        Bind(options, configuration.GetSection(VirtioPanicOptions.SectionName));
    }

    internal static void Bind(VirtioPanicOptions options, IConfigurationSection section)
    {
        if (!section.Exists())
        {
            return;
        }

        CheckKeys(section, s_rootKeys);
        foreach (IConfigurationSection child in section.GetChildren())
        {
            if (string.Equals(child.Key, "Policy", StringComparison.OrdinalIgnoreCase))
            {
                CheckKeys(child, s_policyKeys);
                options.Policy = BindPolicy(options.Policy, child);
            }
            else if (string.Equals(child.Key, "Devices", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            else
            {
                BindScalar(options, child);
            }
        }

        IConfigurationSection devices = section.GetSection("Devices");
        foreach (IConfigurationSection device in devices.GetChildren())
        {
            CheckKeys(device, s_policyKeys);
            options.Devices[device.Key] = BindPolicy(options.Policy, device);
        }
    }

    private static void BindScalar(VirtioPanicOptions options, IConfigurationSection child)
    {
        switch (child.Key.ToUpperInvariant())
        {
            case "JOURNALPATH":
                options.JournalPath = child.Value ?? string.Empty;
                break;
            case "DUMPDIRECTORY":
                options.DumpDirectory = child.Value ?? string.Empty;
                break;
            case "JOURNALDURABILITY":
                options.JournalDurability = Convert<JournalDurability>(child);
                break;
            case "JOURNALMAXFILESIZE":
                options.JournalMaxFileSize = Convert<long>(child);
                break;
            case "JOURNALMAXFILES":
                options.JournalMaxFiles = Convert<int>(child);
                break;
            case "ACTIONTIMEOUT":
                options.ActionTimeout = Convert<TimeSpan>(child);
                break;
            case "RECOVERYTIMEOUT":
                options.RecoveryTimeout = Convert<TimeSpan>(child);
                break;
            case "INLINEPANICHANDLING":
                options.InlinePanicHandling = Convert<bool>(child);
                break;
        }
    }

    private static T Convert<T>(IConfigurationSection section)
    {
        try
        {
            return section.Get<T>()!;
        }
        catch (InvalidOperationException ex)
        {
            throw Failure($"Configuration key '{section.Path}' has an invalid value '{section.Value}': {ex.InnerException?.Message ?? ex.Message} Allowed: {Allowed<T>()}.");
        }
    }

    private static string Allowed<T>() => typeof(T) == typeof(TimeSpan) ? "a time span [d.]hh:mm:ss[.fffffff] (for example 00:00:05)"
        : typeof(T) == typeof(bool) ? "true or false"
        : typeof(T).IsEnum ? string.Join(", ", Enum.GetNames(typeof(T)))
        : "a whole number";

    private static DevicePolicy BindPolicy(DevicePolicy defaults, IConfigurationSection section)
    {
        // A copy of the defaults, then only the keys present overwrite it.
        DevicePolicy policy = defaults with { };
        try
        {
            section.Bind(policy);
        }
        catch (InvalidOperationException ex)
        {
            throw Failure($"{ex.Message} {ex.InnerException?.Message}".Trim());
        }

        return policy;
    }

    private static void CheckKeys(IConfigurationSection section, string[] known)
    {
        foreach (IConfigurationSection child in section.GetChildren())
        {
            if (!known.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                throw Failure($"Unknown configuration key '{child.Path}'; the keys of '{section.Path}' are: {string.Join(", ", known)}.");
            }
        }
    }

    private static OptionsValidationException Failure(string message) =>
        new(Options.DefaultName, typeof(VirtioPanicOptions), [message.ReplaceLineEndings(" ")]);
}
