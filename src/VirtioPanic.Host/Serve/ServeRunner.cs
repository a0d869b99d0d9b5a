using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.Hosting;
using VirtioPanic.VhostUser;

namespace VirtioPanic.Host.Serve;

// serve --vhost-user PATH: our device behind a vhost-user socket, under the policy service, until Ctrl-C.
internal static class ServeRunner
{
    internal static async Task<int> RunAsync(string socketPath, IDictionary<string, string?> overrides, bool jsonLogs, CancellationToken cancellationToken)
    {
        overrides.TryAdd("VirtioPanic:DumpDirectory", Path.Combine(HostBuilder.DefaultStateDirectory(), "dumps"));
        HostApplicationBuilder builder = HostBuilder.Create(overrides, jsonLogs, interactive: false);
        HostBuilder.SetDefaultJournalPath(builder.Configuration, "serve", Path.GetFileName(socketPath));
        using IHost host = HostBuilder.Build(builder, []);
        await host.StartAsync(cancellationToken).ConfigureAwait(false);
        ILoggerFactory loggers = HostBuilder.Loggers(host);
        ILogger log = loggers.CreateLogger("VirtioPanic.Host");
        var manager = host.Services.GetRequiredService<VirtioPanicManager>();
        using var device = new WatchdogDevice(HostBuilder.DeviceOptions(host), TimeProvider.System, loggers.CreateLogger("VirtioPanic.Device"));
        var vm = new FrontEndVmControl(log, TimeProvider.System);
        manager.Attach(device, vm);
        DevicePolicy policy = manager.GetPolicy(device.Id);
        HostLog.Serving(log, device.Id, socketPath, PolicyNames.Of(policy.OnPanic), PolicyNames.Of(policy.OnWatchdog));
        // Ctrl-C and SIGTERM reach the host's console lifetime, which stops the application.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping);
        try
        {
            using var backend = new VhostUserBackend(device, socketPath, loggers.CreateLogger("VirtioPanic.VhostUser"), HostBuilder.BackendOptions(builder.Configuration));
            await backend.RunAsync(stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Ctrl-C.
        }
        finally
        {
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
            vm.LogSuppressed();
        }

        return 0;
    }
}
