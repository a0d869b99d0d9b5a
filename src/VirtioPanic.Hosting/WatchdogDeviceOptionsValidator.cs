using System.Globalization;
using Microsoft.Extensions.Options;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

// Validates WatchdogDeviceOptions at start (ValidateOnStart), every rule of
// WatchdogDeviceOptions.Validate (which the device applies again when it is created), but as one
// failure per key that names the configuration key, the value and what is allowed, and all of
// them at once. WatchdogDeviceOptionsValidatorTests checks that the two agree.
internal sealed class WatchdogDeviceOptionsValidator : IValidateOptions<WatchdogDeviceOptions>
{
    internal const int MinEventCapacity = 4;
    private const string Root = WatchdogDeviceServiceCollectionExtensions.SectionName;
    private static readonly string s_millisecondRange = $"a whole number of milliseconds from 00:00:00.001 to {Format(TimeSpan.FromMilliseconds(uint.MaxValue))} ({uint.MaxValue} ms)";

    public ValidateOptionsResult Validate(string? name, WatchdogDeviceOptions options)
    {
        var failures = new List<string>();
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

        bool min = CheckMilliseconds(options.MinTimeout, "MinTimeout", failures);
        bool def = CheckMilliseconds(options.DefaultTimeout, "DefaultTimeout", failures);
        bool max = CheckMilliseconds(options.MaxTimeout, "MaxTimeout", failures);
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
