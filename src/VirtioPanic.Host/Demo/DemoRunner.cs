using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.Hosting;

namespace VirtioPanic.Host.Demo;

// The README's main command: a demonstration VM in-process, under the policy service.
internal static class DemoRunner
{
    internal static async Task<int> RunAsync(IDictionary<string, string?> overrides, bool jsonLogs, CancellationToken cancellationToken)
    {
        bool interactive = !Console.IsOutputRedirected && !jsonLogs;
        overrides.TryAdd("VirtioPanic:DumpDirectory", Path.Combine(HostBuilder.DefaultStateDirectory(), "dumps"));
        HostApplicationBuilder builder = HostBuilder.Create(overrides, jsonLogs, interactive);
        HostBuilder.SetDefaultJournalPath(builder.Configuration, "demo", instance: null);
        var failures = new List<string>();
        DemoSettings settings = DemoSettings.Load(builder.Configuration.GetSection("Demo"), failures);
        DemoScenario scenario = settings.ScenarioKind;
        if (scenario == DemoScenario.PanicStorm && !overrides.ContainsKey("VirtioPanic:Policy:OnPanic"))
        {
            // The storm guard only matters when the policy restarts the guest into its next panic.
            builder.Configuration["VirtioPanic:Policy:OnPanic"] = "restart";
        }

        if (scenario == DemoScenario.VcpuStall)
        {
            // Per-vCPU stall detection needs the device to know the vCPUs (two here); short stages keep the demo brief.
            builder.Configuration["Device:VcpuCount"] = builder.Configuration["Device:VcpuCount"] is { Length: > 0 } count && count != "0" ? count : "2";
            builder.Configuration["Device:VcpuStallTimeout"] ??= "00:00:01";
            builder.Configuration["Device:VcpuStallSecondStage"] ??= "00:00:02";
        }

        using IHost host = HostBuilder.Build(builder, failures);
        await host.StartAsync(cancellationToken).ConfigureAwait(false);
        ILoggerFactory loggers = HostBuilder.Loggers(host);
        ILogger log = loggers.CreateLogger("VirtioPanic.Host");
        var manager = host.Services.GetRequiredService<PolicyService>();
        using var device = new WatchdogDevice(HostBuilder.DeviceOptions(host), TimeProvider.System, loggers.CreateLogger("VirtioPanic.Device"));
        using var vm = new DemoVm(settings, device, loggers) { Manager = manager };
        var handled = new List<HandledEvent>();
        manager.EventHandled += (_, e) =>
        {
            lock (handled)
            {
                handled.Add(e);
            }
        };
        manager.Attach(device, vm);
        DevicePolicy policy = manager.GetPolicy(device.Id);
        HostLog.DemoStarting(log, PolicyNames.Of(scenario), vm.TransportName, settings.Ring, device.Id, PolicyNames.PanicPlan(policy), PolicyNames.WatchdogPlan(policy));

        bool finished;
        await using (var countdown = settings.Countdown ? new Countdown(device, interactive) : null)
        {
            vm.PowerOn();
            // Ctrl-C reaches the host's console lifetime, which stops the application: end the demo early.
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping);
            finished = await WaitForTheEndAsync(vm, manager, device.Id, log, settings.MaxDuration, stop.Token).ConfigureAwait(false);
        }

        vm.Stop();
        await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        HandledEvent[] rows;
        lock (handled)
        {
            rows = [.. handled];
        }

        Console.Out.Write(SummaryTable.Render(rows, vm, settings, manager.Options.JournalPath, manager.Recovery));
        Console.Out.WriteLine(finished ? "Demo finished." : "Demo did not finish in time.");
        return finished ? 0 : 1;
    }

    // Until the guest powers off, or the policy has paused it (then: show the management query,
    // Continue, and stop), or the time limit.
    private static async Task<bool> WaitForTheEndAsync(DemoVm vm, PolicyService manager, string deviceId, ILogger log, TimeSpan limit, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(limit);
        try
        {
            while (!vm.Finished.IsCompleted)
            {
                if (vm.State == DemoVmState.Paused && manager.GetDevice(deviceId)?.Condition == GuestCondition.Paused)
                {
                    await Task.Delay(300, deadline.Token).ConfigureAwait(false);
                    HostLog.StatusQuery(log, manager.GetStatusJson(indented: true));
                    HandledEvent resumed = await manager.ContinueAsync(deviceId, deadline.Token).ConfigureAwait(false);
                    HostLog.Continued(log, deviceId, resumed.Outcome);
                    await Task.Delay(300, deadline.Token).ConfigureAwait(false);
                    return true;
                }

                await Task.WhenAny(vm.Finished, Task.Delay(50, deadline.Token)).ConfigureAwait(false);
            }

            await Task.Delay(200, deadline.Token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException)
        {
            if (!cancellationToken.IsCancellationRequested)
            {
                HostLog.DemoTimedOut(log, limit);
            }

            // Timed out, or interrupted (Ctrl-C): the summary still shows what happened.
            return false;
        }
    }
}
