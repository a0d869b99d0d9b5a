using System.Globalization;
using Microsoft.Extensions.Configuration;
using VirtioPanic.Hosting;

namespace VirtioPanic.Host.Demo;

// The "Demo" section of appsettings.json (command-line options override it).
internal sealed class DemoSettings
{
    private static readonly string[] s_keys = ["Scenario", "Transport", "Ring", "WatchdogTimeout", "Pretimeout", "PetInterval", "Pets", "GuestPanicReboot", "MaxDuration", "Countdown"];
    private static readonly string[] s_transports = ["pci", "mmio"];
    private static readonly string[] s_rings = ["split", "packed"];

    // panic, watchdog-stall, crash-kernel, shutdown, panic-storm or vcpu-stall (see ScenarioKind).
    public string Scenario { get; set; } = "panic";

    internal DemoScenario ScenarioKind => PolicyNames.TryParse(Scenario, out DemoScenario kind)
        ? kind
        : throw new InvalidOperationException($"Demo:Scenario '{Scenario}' is not one of: {PolicyNames.List<DemoScenario>()}.");

    // "pci" or "mmio".
    public string Transport { get; set; } = "pci";

    // "split" or "packed".
    public string Ring { get; set; } = "split";

    // The timeout the guest asks for with START (VM run time).
    public TimeSpan WatchdogTimeout { get; set; } = TimeSpan.FromSeconds(2);

    // The pretimeout the stalled guest asks for.
    public TimeSpan Pretimeout { get; set; } = TimeSpan.FromMilliseconds(800);

    public TimeSpan PetInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    public int Pets { get; set; } = 3;

    // Linux's panic=N: a panicked guest left running reboots itself after this much run time (zero: halts forever).
    public TimeSpan GuestPanicReboot { get; set; } = TimeSpan.FromSeconds(2);

    // The demo gives up (and exits non-zero) after this long.
    public TimeSpan MaxDuration { get; set; } = TimeSpan.FromSeconds(30);

    // Show the live watchdog countdown.
    public bool Countdown { get; set; } = true;

    // Binds the section key by key: an unknown key, a value that does not convert or one out of
    // range adds one line to failures (the key, the value, what is allowed) and keeps the default,
    // so every mistake in the section is reported at once, with the other sections' (HostBuilder.Build).
    internal static DemoSettings Load(IConfigurationSection section, List<string> failures)
    {
        var settings = new DemoSettings();
        foreach (IConfigurationSection child in section.GetChildren())
        {
            string? value = child.Value;
            switch (child.Key.ToUpperInvariant())
            {
                case "SCENARIO":
                    if (PolicyNames.TryParse(value, out DemoScenario _))
                    {
                        settings.Scenario = value!;
                    }
                    else
                    {
                        failures.Add($"{child.Path} = '{value}': allowed: {PolicyNames.List<DemoScenario>()}.");
                    }

                    break;
                case "TRANSPORT":
                    settings.Transport = OneOf(child, s_transports, settings.Transport, failures);
                    break;
                case "RING":
                    settings.Ring = OneOf(child, s_rings, settings.Ring, failures);
                    break;
                case "WATCHDOGTIMEOUT":
                    settings.WatchdogTimeout = Duration(child, settings.WatchdogTimeout, zeroAllowed: false, failures);
                    break;
                case "PRETIMEOUT":
                    settings.Pretimeout = Duration(child, settings.Pretimeout, zeroAllowed: true, failures);
                    break;
                case "PETINTERVAL":
                    settings.PetInterval = Duration(child, settings.PetInterval, zeroAllowed: false, failures);
                    break;
                case "GUESTPANICREBOOT":
                    settings.GuestPanicReboot = Duration(child, settings.GuestPanicReboot, zeroAllowed: true, failures);
                    break;
                case "MAXDURATION":
                    settings.MaxDuration = Duration(child, settings.MaxDuration, zeroAllowed: false, failures);
                    break;
                case "PETS":
                    if (int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int pets) && pets >= 0)
                    {
                        settings.Pets = pets;
                    }
                    else
                    {
                        failures.Add($"{child.Path} = '{value}': allowed: a whole number, 0 or more.");
                    }

                    break;
                case "COUNTDOWN":
                    if (bool.TryParse(value, out bool countdown))
                    {
                        settings.Countdown = countdown;
                    }
                    else
                    {
                        failures.Add($"{child.Path} = '{value}': allowed: true or false.");
                    }

                    break;
                default:
                    failures.Add($"{child.Path}{(value is null ? string.Empty : $" = '{value}'")}: unknown key; the keys of {section.Path} are: {string.Join(", ", s_keys)}.");
                    break;
            }
        }

        return settings;
    }

    private static string OneOf(IConfigurationSection child, string[] allowed, string current, List<string> failures)
    {
        foreach (string candidate in allowed)
        {
            if (string.Equals(child.Value, candidate, StringComparison.OrdinalIgnoreCase))
            {
                return candidate;
            }
        }

        failures.Add($"{child.Path} = '{child.Value}': allowed: {string.Join(", ", allowed)}.");
        return current;
    }

    private static TimeSpan Duration(IConfigurationSection child, TimeSpan current, bool zeroAllowed, List<string> failures)
    {
        if (TimeSpan.TryParse(child.Value, CultureInfo.InvariantCulture, out TimeSpan value) && (value > TimeSpan.Zero || (zeroAllowed && value == TimeSpan.Zero)) && value <= TimeSpan.FromDays(1))
        {
            return value;
        }

        failures.Add($"{child.Path} = '{child.Value}': allowed: a time span [d.]hh:mm:ss[.fff], {(zeroAllowed ? "from 00:00:00" : "more than 00:00:00")} up to 1.00:00:00.");
        return current;
    }
}
