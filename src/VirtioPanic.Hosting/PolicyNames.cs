using System.Text;

namespace VirtioPanic.Hosting;

/// <summary>
/// The libvirt-style spelling of policy actions and operations (<c>coredump-destroy</c>,
/// <c>inject-nmi</c>, <c>log-only</c>): what configuration, logs, the journal and JSON use.
/// </summary>
public static class PolicyNames
{
    /// <summary>The kebab-case name of an enum member (<c>CoredumpDestroy</c> → <c>coredump-destroy</c>).</summary>
    /// <typeparam name="T">An action or operation enum.</typeparam>
    /// <param name="value">The member.</param>
    /// <returns>Its lower-case, hyphenated name.</returns>
    public static string Of<T>(T value)
        where T : struct, Enum
    {
        string name = value.ToString();
        var builder = new StringBuilder(name.Length + 4);
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (char.IsUpper(c) && i > 0)
            {
                builder.Append('-');
            }

            builder.Append(char.ToLowerInvariant(c));
        }

        return builder.ToString();
    }

    /// <summary>Parses a kebab-case name, a member name, or either with '_' for '-', ignoring case; numbers are refused.</summary>
    /// <typeparam name="T">An action or operation enum.</typeparam>
    /// <param name="text">The text to parse.</param>
    /// <param name="value">The member, when the text names one.</param>
    /// <returns>Whether the text names a member.</returns>
    public static bool TryParse<T>(string? text, out T value)
        where T : struct, Enum
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        string compact = text.Trim().Replace("-", string.Empty, StringComparison.Ordinal).Replace("_", string.Empty, StringComparison.Ordinal);
        foreach (T candidate in Enum.GetValues<T>())
        {
            if (string.Equals(candidate.ToString(), compact, StringComparison.OrdinalIgnoreCase))
            {
                value = candidate;
                return true;
            }
        }

        return false;
    }

    /// <summary>A policy's watchdog sequence in configuration syntax: <see cref="DevicePolicy.OnWatchdog"/> with <see cref="DevicePolicy.WatchdogEscalation"/> (<c>inject-nmi; 10s dump; 10s reset</c>, or just <c>reset</c>).</summary>
    /// <param name="policy">The policy.</param>
    /// <returns>The steps separated by <c>; </c>, each later one with its delay.</returns>
    public static string WatchdogPlan(DevicePolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        return Policy.EscalationText.Plan(policy.OnWatchdog, policy.WatchdogEscalation);
    }

    /// <summary>A policy's panic sequence in configuration syntax: <see cref="DevicePolicy.OnPanic"/> with <see cref="DevicePolicy.PanicEscalation"/>.</summary>
    /// <param name="policy">The policy.</param>
    /// <returns>The steps separated by <c>; </c>, each later one with its delay.</returns>
    public static string PanicPlan(DevicePolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        return Policy.EscalationText.Plan(policy.OnPanic, policy.PanicEscalation);
    }

    /// <summary>A policy's vCPU-stall sequence in configuration syntax: <see cref="DevicePolicy.OnVcpuStall"/> with <see cref="DevicePolicy.VcpuStallEscalation"/>.</summary>
    /// <param name="policy">The policy.</param>
    /// <returns>The steps separated by <c>; </c>, each later one with its delay.</returns>
    public static string VcpuStallPlan(DevicePolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        return Policy.EscalationText.Plan(policy.OnVcpuStall, policy.VcpuStallEscalation);
    }

    /// <summary>The valid names, comma-separated, for error messages and help text.</summary>
    /// <typeparam name="T">An action or operation enum.</typeparam>
    /// <returns>For example <c>destroy, restart, preserve, coredump-destroy, coredump-restart, log-only</c>.</returns>
    public static string List<T>()
        where T : struct, Enum => string.Join(", ", Enum.GetValues<T>().Select(Of));
}
