using System.Globalization;
using Microsoft.Extensions.Options;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

// Validates WatchdogDeviceOptions at start (ValidateOnStart), every rule of
// WatchdogDeviceOptions.Validate (which the device applies again when it is created), but as one
// failure per key that names the configuration key, the value and what is allowed, and all of
// them at once, after the keys that did not bind at all (WatchdogDeviceOptionsSetup.BindingFailures);
// a key that did not bind is not range-checked again (its default is in force), and neither is the
// timeout order when one of the timeouts did not bind. WatchdogDeviceOptionsConfigurationTests
// checks that this validator and Validate agree.
internal sealed class WatchdogDeviceOptionsValidator : IValidateOptions<WatchdogDeviceOptions>
{
    internal const int MinEventCapacity = 4;
    private const string Root = WatchdogDeviceServiceCollectionExtensions.SectionName;
    private static readonly string s_millisecondRange = $"a whole number of milliseconds from 00:00:00.001 to {Format(TimeSpan.FromMilliseconds(uint.MaxValue))} ({uint.MaxValue} ms)";

    public ValidateOptionsResult Validate(string? name, WatchdogDeviceOptions options)
    {
        var failures = new List<string>();
        var unbound = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        if (WatchdogDeviceOptionsSetup.BindingFailures.TryGetValue(options, out List<(string Key, string Message)>? binding))
        {
            foreach ((string key, string message) in binding)
            {
                failures.Add(message);
                unbound.Add(key);
            }
        }

        int bindingFailures = failures.Count;
        if (string.IsNullOrEmpty(options.DeviceId))
        {
            failures.Add($"{Root}:DeviceId = '': must not be empty.");
        }

        WatchdogFeatures features = options.Features;
        if ((features & ~WatchdogFeatures.All) != 0)
        {
            failures.Add($"{Root}:Features = '{features}': has unknown bits 0x{(ulong)(features & ~WatchdogFeatures.All):x}; allowed: {string.Join(", ", Enum.GetNames<WatchdogFeatures>())}.");
        }
        else if ((features & WatchdogFeatures.Pretimeout) != 0 && (features & WatchdogFeatures.Control) == 0)
        {
            failures.Add($"{Root}:Features = '{features}': Pretimeout requires Control.");
        }
        else if ((features & WatchdogFeatures.LogTail) != 0 && (features & WatchdogFeatures.Events) == 0)
        {
            failures.Add($"{Root}:Features = '{features}': LogTail requires Events.");
        }

        bool min = CheckMilliseconds(options.MinTimeout, "MinTimeout", failures) && !unbound.Contains("MinTimeout");
        bool def = CheckMilliseconds(options.DefaultTimeout, "DefaultTimeout", failures) && !unbound.Contains("DefaultTimeout");
        bool max = CheckMilliseconds(options.MaxTimeout, "MaxTimeout", failures) && !unbound.Contains("MaxTimeout");
        if (min && def && max && !(options.MinTimeout <= options.DefaultTimeout && options.DefaultTimeout <= options.MaxTimeout))
        {
            failures.Add($"{Root}:DefaultTimeout = '{Format(options.DefaultTimeout)}': must lie from {Root}:MinTimeout ({Format(options.MinTimeout)}) to {Root}:MaxTimeout ({Format(options.MaxTimeout)}).");
        }

        if (options.ResumeGrace < TimeSpan.Zero || options.ResumeGrace.TotalMilliseconds > uint.MaxValue)
        {
            failures.Add($"{Root}:ResumeGrace = '{Format(options.ResumeGrace)}': must be from 00:00:00 to {Format(TimeSpan.FromMilliseconds(uint.MaxValue))}.");
        }

        if (options.EventCapacity < MinEventCapacity)
        {
            failures.Add($"{Root}:EventCapacity = '{options.EventCapacity}': must be {MinEventCapacity} or more.");
        }

        if (options.VcpuCount is < 0 or > WatchdogDeviceOptions.MaxVcpuCount)
        {
            failures.Add($"{Root}:VcpuCount = '{options.VcpuCount}': must be from 0 (no per-vCPU stall detection) to {WatchdogDeviceOptions.MaxVcpuCount}.");
        }

        if (CheckMilliseconds(options.VcpuStallTimeout, "VcpuStallTimeout", failures) && options.VcpuStallTimeout < WatchdogDeviceOptions.MinVcpuStallTimeout)
        {
            failures.Add($"{Root}:VcpuStallTimeout = '{Format(options.VcpuStallTimeout)}': must be at least {Format(WatchdogDeviceOptions.MinVcpuStallTimeout)} and {s_millisecondRange}.");
        }

        CheckMilliseconds(options.VcpuStallSecondStage, "VcpuStallSecondStage", failures);

        // A key that did not bind keeps its default: a range failure of that default would blame a value nobody wrote.
        for (int i = failures.Count - 1; i >= bindingFailures; i--)
        {
            if (unbound.Any(key => failures[i].StartsWith($"{Root}:{key} ", StringComparison.OrdinalIgnoreCase)))
            {
                failures.RemoveAt(i);
            }
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static bool CheckMilliseconds(TimeSpan value, string key, List<string> failures)
    {
        if (value < TimeSpan.FromMilliseconds(1) || value.Ticks % TimeSpan.TicksPerMillisecond != 0 || value.TotalMilliseconds > uint.MaxValue)
        {
            failures.Add($"{Root}:{key} = '{Format(value)}': must be {s_millisecondRange}.");
            return false;
        }

        return true;
    }

    private static string Format(TimeSpan value) => value.ToString("c", CultureInfo.InvariantCulture);
}
