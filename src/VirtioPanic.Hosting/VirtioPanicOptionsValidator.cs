using Microsoft.Extensions.Options;

namespace VirtioPanic.Hosting;

// Validates the options at start (ValidateOnStart); every message names the configuration key.
internal sealed class VirtioPanicOptionsValidator : IValidateOptions<VirtioPanicOptions>
{
    private const long MinJournalFileSize = 4096;
    private const long MaxJournalFileSize = 1L << 30;
    private static readonly TimeSpan s_maxActionTimeout = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan s_maxPolicyTime = TimeSpan.FromDays(1);

    public ValidateOptionsResult Validate(string? name, VirtioPanicOptions options)
    {
        var failures = new List<string>();
        const string Root = VirtioPanicOptions.SectionName;
        if (string.IsNullOrWhiteSpace(options.JournalPath))
        {
            failures.Add($"{Root}:JournalPath must not be empty.");
        }

        if (string.IsNullOrWhiteSpace(options.DumpDirectory))
        {
            failures.Add($"{Root}:DumpDirectory must not be empty.");
        }

        if (options.JournalMaxFileSize is < MinJournalFileSize or > MaxJournalFileSize)
        {
            failures.Add($"{Root}:JournalMaxFileSize must be between {MinJournalFileSize} and {MaxJournalFileSize} bytes (got {options.JournalMaxFileSize}).");
        }

        if (options.JournalMaxFiles is < 1 or > 100)
        {
            failures.Add($"{Root}:JournalMaxFiles must be between 1 and 100 (got {options.JournalMaxFiles}).");
        }

        if (!Enum.IsDefined(options.JournalDurability))
        {
            failures.Add($"{Root}:JournalDurability must be FlushBeforeAction or FlushAfterAction.");
        }

        if (options.ActionTimeout <= TimeSpan.Zero || options.ActionTimeout > s_maxActionTimeout)
        {
            failures.Add($"{Root}:ActionTimeout must be positive and at most {s_maxActionTimeout} (got {options.ActionTimeout}).");
        }

        if (options.RecoveryTimeout <= TimeSpan.Zero || options.RecoveryTimeout > TimeSpan.FromDays(1))
        {
            failures.Add($"{Root}:RecoveryTimeout must be positive and at most one day (got {options.RecoveryTimeout}).");
        }

        if (options.Policy is null)
        {
            failures.Add($"{Root}:Policy must be set.");
        }
        else
        {
            ValidatePolicy(options.Policy, $"{Root}:Policy", failures);
        }

        foreach (KeyValuePair<string, DevicePolicy> device in options.Devices)
        {
            if (string.IsNullOrWhiteSpace(device.Key))
            {
                failures.Add($"{Root}:Devices has an entry with an empty device id.");
            }

            ValidatePolicy(device.Value, $"{Root}:Devices:{device.Key}", failures);
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    // Shared with PolicyService.SetPolicyAsync.
    internal static void ValidatePolicy(DevicePolicy policy, string prefix, List<string> failures)
    {
        if (!Enum.IsDefined(policy.OnPanic))
        {
            failures.Add($"{prefix}:OnPanic must be one of: {PolicyNames.List<PanicAction>()}.");
        }

        if (!Enum.IsDefined(policy.OnWatchdog))
        {
            failures.Add($"{prefix}:OnWatchdog must be one of: {PolicyNames.List<WatchdogAction>()}.");
        }

        if (!Enum.IsDefined(policy.OnVcpuStall))
        {
            failures.Add($"{prefix}:OnVcpuStall must be one of: {PolicyNames.List<WatchdogAction>()}.");
        }

        CheckEscalation(policy.OnWatchdog, policy.WatchdogEscalation, $"{prefix}:OnWatchdog", failures);
        CheckEscalation(policy.OnVcpuStall, policy.VcpuStallEscalation, $"{prefix}:OnVcpuStall", failures);
        CheckEscalation(policy.OnPanic, policy.PanicEscalation, $"{prefix}:OnPanic", failures);

        if (!Enum.IsDefined(policy.OnCrashKernelTimeout))
        {
            failures.Add($"{prefix}:OnCrashKernelTimeout must be one of: {PolicyNames.List<PanicAction>()}.");
        }

        CheckTime(policy.PanicGracePeriod, $"{prefix}:PanicGracePeriod", allowZero: true, failures);
        CheckTime(policy.CrashKernelDeadline, $"{prefix}:CrashKernelDeadline", allowZero: true, failures);
        CheckTime(policy.StormWindow, $"{prefix}:StormWindow", allowZero: false, failures);
        if (policy.StormThreshold is < 0 or 1)
        {
            failures.Add($"{prefix}:StormThreshold must be 0 (guard off) or at least 2 (got {policy.StormThreshold}).");
        }
    }

    // A sequence (the key's value, or the escalation property in code): bounded, each delay within
    // limits, no step that means "do nothing" after the first, nothing after a step that ends the VM.
    private static void CheckEscalation(WatchdogAction first, IReadOnlyList<WatchdogStep>? rest, string key, List<string> failures)
    {
        rest ??= [];
        CheckSequence(
            key,
            PolicyNames.Of(first),
            rest.Count,
            i => (rest[i].After, PolicyNames.Of(rest[i].Action), Enum.IsDefined(rest[i].Action), rest[i].Action == WatchdogAction.None),
            i => (i < 0 ? first : rest[i].Action) is WatchdogAction.Reset or WatchdogAction.Poweroff,
            PolicyNames.List<WatchdogAction>(),
            failures);
    }

    private static void CheckEscalation(PanicAction first, IReadOnlyList<PanicStep>? rest, string key, List<string> failures)
    {
        rest ??= [];
        CheckSequence(
            key,
            PolicyNames.Of(first),
            rest.Count,
            i => (rest[i].After, PolicyNames.Of(rest[i].Action), Enum.IsDefined(rest[i].Action), rest[i].Action == PanicAction.LogOnly),
            i => (i < 0 ? first : rest[i].Action) is PanicAction.Destroy or PanicAction.Restart or PanicAction.CoredumpDestroy or PanicAction.CoredumpRestart,
            PolicyNames.List<PanicAction>(),
            failures);
    }

    // Step i (0-based among the later steps) is step i + 2 of the sequence; ends(i) says whether
    // the action of later step i (or of the first, i = -1) leaves nothing to escalate to.
    private static void CheckSequence(string key, string firstName, int count, Func<int, (TimeSpan After, string Name, bool Defined, bool Idle)> step, Func<int, bool> ends, string allowed, List<string> failures)
    {
        if (count == 0)
        {
            return;
        }

        if (count > Policy.EscalationText.MaxSteps - 1)
        {
            failures.Add($"{key} has {count + 1} steps; at most {Policy.EscalationText.MaxSteps} are allowed.");
            return;
        }

        if (ends(-1))
        {
            failures.Add($"{key}: step 1 ({firstName}) resets or powers off the VM, which ends the escalation; it must be the last step.");
        }

        for (int i = 0; i < count; i++)
        {
            (TimeSpan after, string name, bool defined, bool idle) = step(i);
            int number = i + 2;
            if (!defined)
            {
                failures.Add($"{key}: step {number} must be one of: {allowed}.");
                continue;
            }

            if (after <= TimeSpan.Zero || after > s_maxPolicyTime)
            {
                failures.Add($"{key}: step {number} ({name}) must come a positive time of at most {s_maxPolicyTime} after the step before it (got {after}).");
            }

            if (idle)
            {
                failures.Add($"{key}: step {number} is {name}, which does nothing; only the first step may be {name}.");
            }

            if (i < count - 1 && ends(i))
            {
                failures.Add($"{key}: step {number} ({name}) resets or powers off the VM, which ends the escalation; it must be the last step.");
            }
        }
    }

    private static void CheckTime(TimeSpan value, string key, bool allowZero, List<string> failures)
    {
        if (value < TimeSpan.Zero || (!allowZero && value == TimeSpan.Zero) || value > s_maxPolicyTime)
        {
            failures.Add($"{key} must be {(allowZero ? "zero or positive" : "positive")} and at most {s_maxPolicyTime} (got {value}).");
        }
    }
}
