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
    private static readonly string[] s_policyKeys = ["OnPanic", "OnWatchdog", "PanicGracePeriod", "CrashKernelDeadline", "OnCrashKernelTimeout", "StormThreshold", "StormWindow", "OnVcpuStall"];

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
        // A copy of the defaults, then only the keys present overwrite it (CheckKeys ran first).
        DevicePolicy policy = defaults with { };
        foreach (IConfigurationSection child in section.GetChildren())
        {
            policy = child.Key.ToUpperInvariant() switch
            {
                "ONPANIC" => Sequence(child, PanicAction.LogOnly, out PanicAction panic, out List<(TimeSpan After, PanicAction Action)> panicSteps)
                    ? policy with { OnPanic = panic, PanicEscalation = [.. panicSteps.Select(s => new PanicStep(s.After, s.Action))] }
                    : policy,
                "ONWATCHDOG" => Sequence(child, WatchdogAction.None, out WatchdogAction watchdog, out List<(TimeSpan After, WatchdogAction Action)> watchdogSteps)
                    ? policy with { OnWatchdog = watchdog, WatchdogEscalation = [.. watchdogSteps.Select(s => new WatchdogStep(s.After, s.Action))] }
                    : policy,
                "ONVCPUSTALL" => Sequence(child, WatchdogAction.None, out WatchdogAction stall, out List<(TimeSpan After, WatchdogAction Action)> stallSteps)
                    ? policy with { OnVcpuStall = stall, VcpuStallEscalation = [.. stallSteps.Select(s => new WatchdogStep(s.After, s.Action))] }
                    : policy,
                "ONCRASHKERNELTIMEOUT" => policy with { OnCrashKernelTimeout = Action<PanicAction>(child) },
                "PANICGRACEPERIOD" => policy with { PanicGracePeriod = Convert<TimeSpan>(child) },
                "CRASHKERNELDEADLINE" => policy with { CrashKernelDeadline = Convert<TimeSpan>(child) },
                "STORMTHRESHOLD" => policy with { StormThreshold = Convert<int>(child) },
                "STORMWINDOW" => policy with { StormWindow = Convert<TimeSpan>(child) },
                _ => policy,
            };
        }

        return policy;
    }

    // An action key whose value may be a sequence ("inject-nmi; 10s dump; 10s reset"); a single
    // action is its one-step case. False only for a key without a value (left as it was).
    private static bool Sequence<TAction>(IConfigurationSection section, TAction waitAction, out TAction first, out List<(TimeSpan After, TAction Action)> rest)
        where TAction : struct, Enum
    {
        if (section.Value is null && !section.GetChildren().Any())
        {
            first = default;
            rest = [];
            return false;
        }

        if (!Policy.EscalationText.TryParse(section.Value, waitAction, out first, out rest, out string? error))
        {
            string example = typeof(TAction) == typeof(PanicAction) ? "log-only; 30s coredump-restart" : "inject-nmi; 10s dump; 10s reset";
            throw Failure($"Failed to convert configuration value '{section.Value}' at '{section.Path}' to a {typeof(TAction).Name} or a sequence of steps: {error} Allowed: one action, or a sequence of steps separated by ';', each later one after a delay (500ms, 10s, 2m, 1h, 00:00:10), for example '{example}'.");
        }

        return true;
    }

    private static TAction Action<TAction>(IConfigurationSection section)
        where TAction : struct, Enum =>
        PolicyNames.TryParse(section.Value, out TAction action)
            ? action
            : throw Failure($"Failed to convert configuration value '{section.Value}' at '{section.Path}' to {typeof(TAction).Name}: use one of: {PolicyNames.List<TAction>()}.");

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
