using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.Hosting;
using VirtioPanic.Hosting.Control;
using VirtioPanic.Hosting.Qmp;
using VirtioPanic.VhostUser;

namespace VirtioPanic.Host.Serve;

// serve --vhost-user PATH [--qmp QMP]: our device behind a vhost-user socket, under the policy
// service, until Ctrl-C; with a QMP monitor the service acts on the VM.
internal static class ServeRunner
{
    internal static async Task<int> RunAsync(string socketPath, IDictionary<string, string?> overrides, bool jsonLogs, CancellationToken cancellationToken)
    {
        overrides.TryAdd("VirtioPanic:DumpDirectory", Path.Combine(HostBuilder.DefaultStateDirectory(), "dumps"));
        HostApplicationBuilder builder = HostBuilder.Create(overrides, jsonLogs, interactive: false);
        HostBuilder.SetDefaultJournalPath(builder.Configuration, "serve", Path.GetFileName(socketPath));
        using IHost host = builder.Build();
        await host.StartAsync(cancellationToken).ConfigureAwait(false);
        ILoggerFactory loggers = HostBuilder.Loggers(host);
        ILogger log = loggers.CreateLogger("VirtioPanic.Host");
        var manager = host.Services.GetRequiredService<VirtioPanicManager>();
        using var device = new WatchdogDevice(HostBuilder.DeviceOptions(builder.Configuration), TimeProvider.System, loggers.CreateLogger("VirtioPanic.Device"));

        // With a QMP monitor the policy's actions are carried out on the VM and the VM's run state
        // drives the watchdog (QmpVmControl.FollowDevice); without one the front end owns the VM
        // and every action is reported as not carried out.
        QmpVmControlOptions? qmpOptions = QmpOptions(builder.Configuration);
        QmpVmControl? qmp = qmpOptions is null ? null : new QmpVmControl(qmpOptions, loggers.CreateLogger("VirtioPanic.Qmp"));
        FrontEndVmControl? frontEnd = qmp is null ? new FrontEndVmControl(log, TimeProvider.System) : null;
        using IDisposable? follow = qmp?.FollowDevice(device);
        manager.Attach(device, (IVmControl?)qmp ?? frontEnd!);
        DevicePolicy policy = manager.GetPolicy(device.Id);
        HostLog.Serving(log, device.Id, socketPath, PolicyNames.Of(policy.OnPanic), PolicyNames.Of(policy.OnWatchdog), qmpOptions?.SocketPath ?? "none (the front end owns the VM)");
        // Ctrl-C and SIGTERM reach the host's console lifetime, which stops the application.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping);
        string? controlPath = builder.Configuration["Control:SocketPath"] is { Length: > 0 } c ? c : null;
        ManagementSocket? control = controlPath is null ? null : new ManagementSocket(manager, controlPath, loggers.CreateLogger("VirtioPanic.Control"));
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
            if (control is not null)
            {
                await control.DisposeAsync().ConfigureAwait(false);
            }

            frontEnd?.LogSuppressed();
            if (qmp is not null)
            {
                await qmp.DisposeAsync().ConfigureAwait(false);
            }
        }

        return 0;
    }

    // Section Qmp: SocketPath (serve --qmp), CommandTimeout, DumpTimeout, ReconnectDelay.
    private static QmpVmControlOptions? QmpOptions(ConfigurationManager configuration)
    {
        IConfigurationSection section = configuration.GetSection("Qmp");
        if (section["SocketPath"] is not { Length: > 0 } path)
        {
            return null;
        }

        var defaults = new QmpVmControlOptions { SocketPath = path };
        return new QmpVmControlOptions
        {
            SocketPath = path,
            CommandTimeout = section.GetValue<TimeSpan?>("CommandTimeout") ?? defaults.CommandTimeout,
            DumpTimeout = section.GetValue<TimeSpan?>("DumpTimeout") ?? defaults.DumpTimeout,
            ReconnectDelay = section.GetValue<TimeSpan?>("ReconnectDelay") ?? defaults.ReconnectDelay,
        };
    }
}
