using System.Globalization;

namespace VirtioPanic.Hosting.Policy;

// The compact form of a policy in configuration, the management socket and the status JSON:
//   policy = step *( ";" step )        first step: an action, done at once
//   step   = [ delay WS ] action       every later step: a delay (after the previous step), then an action
//   delay  = number ( "ms" | "s" | "m" | "h" ) | TimeSpan ("00:00:10", "1.00:00:00")
// for example "inject-nmi; 10s dump; 10s reset". A single action is the one-step case, so every
// existing setting ("reset") keeps its meaning. Actions are PolicyNames spellings.
internal static class EscalationText
{
    // At most this many steps, the first included: a bounded plan per device.
    internal const int MaxSteps = 8;

    internal static bool IsSequence(string? text) => text is not null && text.Contains(';', StringComparison.Ordinal);

    // Parses the compact form. On failure, error says which step and why (the caller adds the key).
    internal static bool TryParse<TAction>(string? text, TAction waitAction, out TAction first, out List<(TimeSpan After, TAction Action)> rest, out string? error)
        where TAction : struct, Enum
    {
        first = default;
        rest = [];
        error = null;
        string[] parts = (text ?? string.Empty).Split(';');
        if (parts.Length > MaxSteps)
        {
            error = $"The sequence has {parts.Length} steps; at most {MaxSteps} are allowed.";
            return false;
        }

        for (int i = 0; i < parts.Length; i++)
        {
            string part = parts[i].Trim();
            int number = i + 1;
            if (part.Length == 0)
            {
                error = parts.Length == 1 ? $"The value is empty; use one of: {PolicyNames.List<TAction>()}." : $"Step {number} is empty.";
                return false;
            }

            int space = part.IndexOfAny([' ', '\t']);
            string head = space < 0 ? part : part[..space];
            bool headIsDelay = TryParseDelay(head, out TimeSpan delay);
            if (i == 0)
            {
                if (headIsDelay)
                {
                    error = $"Step 1 ('{part}') has a delay, but the first step acts at once; to wait first, write '{PolicyNames.Of(waitAction)}; {part}'.";
                    return false;
                }

                if (!PolicyNames.TryParse(part, out first))
                {
                    error = parts.Length == 1
                        ? $"'{part}' is not a valid {typeof(TAction).Name}; use one of: {PolicyNames.List<TAction>()}."
                        : $"Step 1: '{part}' is not a valid {typeof(TAction).Name}; use one of: {PolicyNames.List<TAction>()}.";
                    return false;
                }

                continue;
            }

            if (!headIsDelay || space < 0)
            {
                error = space < 0 && PolicyNames.TryParse(part, out TAction _)
                    ? $"Step {number} ('{part}') needs a delay before its action, for example '10s {part}'."
                    : $"Step {number}: '{head}' is not a delay; write 500ms, 10s, 2m, 1h or 00:00:10 before the action.";
                return false;
            }

            string name = part[(space + 1)..].Trim();
            if (!PolicyNames.TryParse(name, out TAction action))
            {
                error = $"Step {number}: '{name}' is not a valid {typeof(TAction).Name}; use one of: {PolicyNames.List<TAction>()}.";
                return false;
            }

            rest.Add((delay, action));
        }

        return true;
    }

    // "10s", "500ms", "2m", "1h", "1.5s", or a TimeSpan in the invariant "c" format.
    internal static bool TryParseDelay(string text, out TimeSpan delay)
    {
        delay = default;
        if (text.Contains(':', StringComparison.Ordinal))
        {
            return TimeSpan.TryParseExact(text, "c", CultureInfo.InvariantCulture, out delay);
        }

        (string Suffix, double Scale)[] units = [("ms", TimeSpan.TicksPerMillisecond), ("s", TimeSpan.TicksPerSecond), ("m", TimeSpan.TicksPerMinute), ("h", TimeSpan.TicksPerHour)];
        foreach ((string suffix, double scale) in units)
        {
            if (text.Length > suffix.Length && text.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)
                && double.TryParse(text.AsSpan(0, text.Length - suffix.Length), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value)
                && value * scale < TimeSpan.MaxValue.Ticks)
            {
                delay = TimeSpan.FromTicks((long)Math.Round(value * scale));
                return true;
            }
        }

        return false;
    }

    internal static string Delay(TimeSpan value) =>
        value > TimeSpan.Zero && value.Ticks % TimeSpan.TicksPerHour == 0 ? $"{value.Ticks / TimeSpan.TicksPerHour}h"
        : value > TimeSpan.Zero && value.Ticks % TimeSpan.TicksPerMinute == 0 ? $"{value.Ticks / TimeSpan.TicksPerMinute}m"
        : value > TimeSpan.Zero && value.Ticks % TimeSpan.TicksPerSecond == 0 ? $"{value.Ticks / TimeSpan.TicksPerSecond}s"
        : value > TimeSpan.Zero && value.Ticks % TimeSpan.TicksPerMillisecond == 0 ? $"{value.Ticks / TimeSpan.TicksPerMillisecond}ms"
        : value.ToString("c", CultureInfo.InvariantCulture);

    internal static string Step(TimeSpan after, string action) => $"{Delay(after)} {action}";

    internal static string Plan(WatchdogAction first, IReadOnlyList<WatchdogStep> rest) =>
        rest.Count == 0 ? PolicyNames.Of(first) : $"{PolicyNames.Of(first)}; {string.Join("; ", rest)}";

    internal static string Plan(PanicAction first, IReadOnlyList<PanicStep> rest) =>
        rest.Count == 0 ? PolicyNames.Of(first) : $"{PolicyNames.Of(first)}; {string.Join("; ", rest)}";
}
