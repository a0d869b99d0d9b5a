using System.CommandLine;
using Microsoft.Extensions.Configuration;
using VirtioPanic.Device;
using VirtioPanic.Host.Control;
using VirtioPanic.Host.Demo;
using VirtioPanic.Host.Serve;
using VirtioPanic.Hosting;

namespace VirtioPanic.Host;

// The VirtioPanic host program. With no command it runs the demonstration VM; `serve` serves the
// device over vhost-user. Defaults come from appsettings.json next to the program; options override them.
internal static class Program
{
    // Exit code for settings that are invalid (each printed as one line on stderr, no stack trace).
    internal const int ConfigurationErrorExitCode = 2;

    private static async Task<int> Main(string[] args)
    {
        // System.CommandLine's default handler prints an exception with its stack trace; a
        // configuration mistake is the user's, so it is reported as lines, and only a real fault
        // (anything else) keeps its trace.
        try
        {
            return await BuildCommand().Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }).ConfigureAwait(false);
        }
        catch (Exception ex) when (IsConfigurationError(ex, out List<string> failures))
        {
            foreach (string failure in failures)
            {
                await Console.Error.WriteLineAsync("error: " + failure).ConfigureAwait(false);
            }

            return ConfigurationErrorExitCode;
        }
    }

    private static bool IsConfigurationError(Exception exception, out List<string> failures)
    {
        failures = [];
        return HostBuilder.ConfigurationFailures(exception, failures);
    }

    internal static RootCommand BuildCommand()
    {
        IConfiguration settings = HelpSettings();
        string Default(string key, string builtIn) => settings[key] is { Length: > 0 } value ? value : builtIn;
        var library = new DevicePolicy();
        string libraryOnPanic = PolicyNames.PanicPlan(library), libraryOnWatchdog = PolicyNames.WatchdogPlan(library);
        var scenario = new Option<string>("--scenario", "-s")
        {
            Description = $"What the demo guest does: panic (arm, pet, panic with a message), watchdog-stall (stop petting; pretimeout, then expiry), crash-kernel (panic with kdump: crash-loaded, crash kernel, reboot), shutdown (clean shutdown), panic-storm (panics at every boot until the storm guard preserves it), vcpu-stall (two vCPUs pet their stall-detector slots, one hard-locks: the device's VCPU_STALL notice, the guest panics naming it, the policy acts). Default: {Default("Demo:Scenario", "panic")} (Demo:Scenario).",
        };
        scenario.AcceptOnlyFromAmong("panic", "watchdog-stall", "crash-kernel", "shutdown", "panic-storm", "vcpu-stall");
        var transport = new Option<string>("--transport", "-t") { Description = $"How the guest finds the device: pci (virtio-pci) or mmio (virtio-mmio). Default: {Default("Demo:Transport", "pci")} (Demo:Transport)." };
        transport.AcceptOnlyFromAmong("pci", "mmio");
        var ring = new Option<string>("--ring", "-r") { Description = $"Virtqueue format the guest negotiates: split or packed. Default: {Default("Demo:Ring", "split")} (Demo:Ring)." };
        ring.AcceptOnlyFromAmong("split", "packed");
        var onPanic = new Option<string>("--on-panic") { Description = $"Panic policy: {PolicyNames.List<PanicAction>()}, or a sequence for a panic the guest does not follow with a reboot, steps separated by ';', each later one after a delay (\"log-only; 30s coredump-restart\"). Default: {Default("VirtioPanic:Policy:OnPanic", libraryOnPanic)} (VirtioPanic:Policy:OnPanic; the library's own default, without that setting, is {libraryOnPanic})." };
        var onWatchdog = new Option<string>("--on-watchdog") { Description = $"Watchdog-expiry policy: {PolicyNames.List<WatchdogAction>()}, or a staged sequence, steps separated by ';', each later one after a delay and cancelled when the guest re-arms the watchdog, panics or resets (\"inject-nmi; 10s dump; 10s reset\"). Default: {Default("VirtioPanic:Policy:OnWatchdog", libraryOnWatchdog)} (VirtioPanic:Policy:OnWatchdog; the library's own default is {libraryOnWatchdog})." };
        var grace = new Option<double?>("--panic-grace") { Description = $"Seconds to wait after a panic before acting (a guest reset cancels the action). Default: {Default("VirtioPanic:Policy:PanicGracePeriod", "00:00:00")} (VirtioPanic:Policy:PanicGracePeriod)." };
        var journal = new Option<string?>("--journal") { Description = "The durable event journal (JSON lines). Default: <temp>/virtiopanic/demo-<device id>.jsonl (serve: serve-<device id>-<socket name>.jsonl)." };
        var dumps = new Option<string?>("--dump-dir") { Description = "Where guest memory dumps go. Default: <temp>/virtiopanic/dumps." };
        var noCountdown = new Option<bool>("--no-countdown") { Description = "Do not show the live watchdog countdown." };
        var logJson = new Option<bool>("--log-json") { Description = "Write logs as JSON objects (one per line) with all structured properties." };

        var root = new RootCommand(
            "VirtioPanic host: runs a demonstration VM with the virtio watchdog/panic device (ID 35) under the policy service. " +
            "The guest boots over virtio-pci (or mmio), arms the watchdog, pets it, then panics (or stalls, ...); the policy service " +
            "journals the event and acts on the VM; a summary table closes the run. Settings: appsettings.json next to the program " +
            "(sections VirtioPanic, Device, Demo, Telemetry, Serilog) and VIRTIOPANIC_-prefixed environment variables (e.g. VIRTIOPANIC_VirtioPanic__Policy__OnPanic=preserve); options below override them; each option's default shown is the value in force there. " +
            "Exit codes: 0 the demo finished, 1 it did not finish in time, 2 the settings are invalid (one line per mistake on stderr: the key, the value, what is allowed).");
        foreach (Option option in new Option[] { scenario, transport, ring, onPanic, onWatchdog, grace, journal, dumps, noCountdown, logJson })
        {
            root.Options.Add(option);
        }

        root.SetAction((parse, cancellationToken) =>
        {
            var overrides = Overrides(parse, onPanic, onWatchdog, grace, journal, dumps);
            Set(overrides, "Demo:Scenario", parse.GetValue(scenario));
            Set(overrides, "Demo:Transport", parse.GetValue(transport));
            Set(overrides, "Demo:Ring", parse.GetValue(ring));
            if (parse.GetValue(noCountdown))
            {
                overrides["Demo:Countdown"] = "false";
            }

            return DemoRunner.RunAsync(overrides, parse.GetValue(logJson), cancellationToken);
        });

        var socket = new Option<string?>("--vhost-user") { Description = "Path of the Unix socket to listen on for a vhost-user front end (QEMU: -chardev socket,path=PATH plus a vhost-user device). Without it, section Serve:Vms lists the VMs to serve (each: DeviceId, VhostUser, Qmp)." };
        var deviceId = new Option<string?>("--device-id") { Description = $"The device's id in events, logs and the journal. Default: {Default("Device:DeviceId", new WatchdogDeviceOptions().DeviceId)} (Device:DeviceId)." };
        var sealedMemory = new Option<bool>("--require-sealed-memory") { Description = $"Refuse guest memory the front end could truncate under the back end (a file not sealed with F_SEAL_SHRINK: memory-backend-file, User-Mode Linux). Default: {Default("VhostUser:RequireSealedMemory", "false")} (VhostUser:RequireSealedMemory; false: accepted with a warning)." };
        var setupTimeout = new Option<double?>("--setup-timeout") { Description = $"Seconds a new vhost-user connection may take to set up (SET_OWNER) before it is closed. Default: {Default("VhostUser:SetupTimeout", "00:00:15")} (VhostUser:SetupTimeout)." };
        var qmp = new Option<string?>("--qmp") { Description = $"The VMM's QMP monitor socket (QEMU: -qmp unix:PATH,server=on,wait=off): the policy service carries out its actions there (stop, cont, system_reset, quit, system_powerdown, dump-guest-memory, inject-nmi) and the watchdog follows the VM's run state. Default: {Default("Qmp:SocketPath", "none")} (Qmp:SocketPath; none: the front end owns the VM)." };
        var control = new Option<string?>("--control") { Description = $"Listen for management clients on this Unix socket (QMP framing, owner only): the status, events, set-policy and continue commands of this program use it. Default: {Default("Control:SocketPath", "none")} (Control:SocketPath)." };
        var serve = new Command("serve", "Serve the watchdog device behind a vhost-user socket, with the policy service, until Ctrl-C (or SIGTERM). With --qmp the service acts on the VM through its QMP monitor and the watchdog counts only while the VM runs; without it the front end owns the VM: decided actions are journaled and logged, and reported as not carried out.");
        foreach (Option option in new Option[] { socket, qmp, control, deviceId, sealedMemory, setupTimeout, onPanic, onWatchdog, grace, journal, dumps, logJson })
        {
            serve.Options.Add(option);
        }

        serve.SetAction((parse, cancellationToken) =>
        {
            var overrides = Overrides(parse, onPanic, onWatchdog, grace, journal, dumps);
            Set(overrides, "Device:DeviceId", parse.GetValue(deviceId));
            Set(overrides, "Qmp:SocketPath", parse.GetValue(qmp));
            Set(overrides, "Control:SocketPath", parse.GetValue(control));
            if (parse.GetValue(sealedMemory))
            {
                overrides["VhostUser:RequireSealedMemory"] = "true";
            }

            if (parse.GetValue(setupTimeout) is double seconds)
            {
                overrides["VhostUser:SetupTimeout"] = TimeSpan.FromSeconds(seconds).ToString("c", System.Globalization.CultureInfo.InvariantCulture);
            }

            return ServeRunner.RunAsync(parse.GetValue(socket), overrides, parse.GetValue(logJson), cancellationToken);
        });
        root.Subcommands.Add(serve);
        foreach (Command client in ControlCommands.Build())
        {
            root.Subcommands.Add(client);
        }

        return root;
    }

    // What --help shows as each default: appsettings.json and the VIRTIOPANIC_ environment, read as
    // HostBuilder reads them. A file that does not parse shows the built-in defaults here; running
    // then reports the file's error.
    private static IConfiguration HelpSettings()
    {
        try
        {
            return new ConfigurationBuilder()
                .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true)
                .AddEnvironmentVariables("VIRTIOPANIC_")
                .Build();
        }
        catch (InvalidDataException)
        {
            return new ConfigurationBuilder().Build();
        }
        catch (FormatException)
        {
            return new ConfigurationBuilder().Build();
        }
    }

    private static Dictionary<string, string?> Overrides(ParseResult parse, Option<string> onPanic, Option<string> onWatchdog, Option<double?> grace, Option<string?> journal, Option<string?> dumps)
    {
        var overrides = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        Set(overrides, "VirtioPanic:Policy:OnPanic", parse.GetValue(onPanic));
        Set(overrides, "VirtioPanic:Policy:OnWatchdog", parse.GetValue(onWatchdog));
        if (parse.GetValue(grace) is double seconds)
        {
            overrides["VirtioPanic:Policy:PanicGracePeriod"] = TimeSpan.FromSeconds(seconds).ToString("c", System.Globalization.CultureInfo.InvariantCulture);
        }

        Set(overrides, "VirtioPanic:JournalPath", parse.GetValue(journal));
        Set(overrides, "VirtioPanic:DumpDirectory", parse.GetValue(dumps));
        return overrides;
    }

    private static void Set(Dictionary<string, string?> overrides, string key, string? value)
    {
        if (!string.IsNullOrEmpty(value))
        {
            overrides[key] = value;
        }
    }
}
