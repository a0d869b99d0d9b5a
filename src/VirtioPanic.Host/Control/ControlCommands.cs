using System.CommandLine;
using System.Text.Json.Nodes;
using VirtioPanic.Hosting;

namespace VirtioPanic.Host.Control;

// The management client subcommands (virsh-style): status, events, set-policy, continue, each
// against the management socket of a running `serve --control PATH`.
internal static class ControlCommands
{
    internal static IEnumerable<Command> Build()
    {
        Option<string> Socket() => new("--control", "-c") { Description = "The management socket of a running `serve --control PATH`.", Required = true };
        Option<string> Device(bool required) => new("--device", "-d") { Description = "The device id (e.g. wdt0).", Required = required };

        var statusSocket = Socket();
        var statusDevice = Device(required: false);
        var status = new Command("status", "Show every device's status, or one device's (--device): watchdog, time left, policy, condition, last event, deadline.") { statusSocket, statusDevice };
        status.SetAction((parse, ct) => parse.GetValue(statusDevice) is { } device
            ? ControlClient.ExecuteAsync(parse.GetValue(statusSocket)!, "query-device", new JsonObject { ["device"] = device }, Console.Out, Console.Error, ct)
            : ControlClient.ExecuteAsync(parse.GetValue(statusSocket)!, "query-devices", null, Console.Out, Console.Error, ct));
        yield return status;

        var eventsSocket = Socket();
        var events = new Command("events", "Follow the handled events (QMP-shaped JSON, one per line) until Ctrl-C.") { eventsSocket };
        events.SetAction((parse, ct) => ControlClient.FollowEventsAsync(parse.GetValue(eventsSocket)!, Console.Out, Console.Error, ct));
        yield return events;

        var setSocket = Socket();
        var setDevice = Device(required: true);
        var onPanic = new Option<string?>("--on-panic") { Description = $"Panic policy: {PolicyNames.List<PanicAction>()}, or a sequence (\"log-only; 30s coredump-restart\"); the service checks it." };
        var onWatchdog = new Option<string?>("--on-watchdog") { Description = $"Watchdog-expiry policy: {PolicyNames.List<WatchdogAction>()}, or a sequence (\"inject-nmi; 10s dump; 10s reset\"); the service checks it." };
        var grace = new Option<double?>("--panic-grace") { Description = "Seconds to wait after a panic before acting." };
        var setPolicy = new Command("set-policy", "Change a device's policy at run time (only the options given change).") { setSocket, setDevice, onPanic, onWatchdog, grace };
        setPolicy.SetAction((parse, ct) =>
        {
            var policy = new JsonObject();
            if (parse.GetValue(onPanic) is { } p)
            {
                policy["on-panic"] = p;
            }

            if (parse.GetValue(onWatchdog) is { } w)
            {
                policy["on-watchdog"] = w;
            }

            if (parse.GetValue(grace) is double seconds)
            {
                policy["panic-grace-period-ms"] = (long)(seconds * 1000);
            }

            return ControlClient.ExecuteAsync(parse.GetValue(setSocket)!, "set-policy", new JsonObject { ["device"] = parse.GetValue(setDevice), ["policy"] = policy }, Console.Out, Console.Error, ct);
        });
        yield return setPolicy;

        var continueSocket = Socket();
        var continueDevice = Device(required: true);
        var resume = new Command("continue", "Resume a VM the policy preserved (paused) and clear the device's panicked state.") { continueSocket, continueDevice };
        resume.SetAction((parse, ct) => ControlClient.ExecuteAsync(parse.GetValue(continueSocket)!, "continue", new JsonObject { ["device"] = parse.GetValue(continueDevice) }, Console.Out, Console.Error, ct));
        yield return resume;
    }
}
