namespace VirtioPanic.Host.Demo;

// The "Demo" section of appsettings.json (command-line options override it).
internal sealed class DemoSettings
{
    // panic, watchdog-stall, crash-kernel, shutdown or panic-storm (see ScenarioKind).
    public string Scenario { get; set; } = "panic";

    internal DemoScenario ScenarioKind => VirtioPanic.Hosting.PolicyNames.TryParse(Scenario, out DemoScenario kind)
        ? kind
        : throw new InvalidOperationException($"Demo:Scenario '{Scenario}' is not one of: {VirtioPanic.Hosting.PolicyNames.List<DemoScenario>()}.");

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
}
