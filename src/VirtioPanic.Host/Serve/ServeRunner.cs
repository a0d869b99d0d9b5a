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
// service, until Ctrl-C; with a QMP monitor the service acts on the VM. Without --vhost-user,
// section Serve:Vms lists many VMs for one process (each: DeviceId, VhostUser, Qmp and VcpuCount
// optional; VcpuCount, the VM's vCPU count for per-vCPU stall detection, defaults to
// Device:VcpuCount), each
// with its own device, back end, QMP connection and policy (VirtioPanic:Devices:<id>), all under
// one policy service and one journal (every record names its device).
internal static class ServeRunner
{
    // One VM served by this process.
    private sealed record ServedVm(string DeviceId, string VhostUserSocket, string? QmpSocket, int? VcpuCount = null);

    internal static async Task<int> RunAsync(string? socketPath, IDictionary<string, string?> overrides, bool jsonLogs, CancellationToken cancellationToken)
    {
        overrides.TryAdd("VirtioPanic:DumpDirectory", Path.Combine(HostBuilder.DefaultStateDirectory(), "dumps"));
        HostApplicationBuilder builder = HostBuilder.Create(overrides, jsonLogs, interactive: false);
        // A mistake in Serve:Vms is reported with every other configuration mistake (HostBuilder.Build).
        (List<ServedVm> vms, string? error) = Vms(builder.Configuration, socketPath);
        HostBuilder.SetDefaultJournalPath(builder.Configuration, "serve", vms.Count == 1 ? Path.GetFileName(vms[0].VhostUserSocket) : $"{vms.Count}-vms");
        using IHost host = HostBuilder.Build(builder, error is null ? [] : [error]);
        await host.StartAsync(cancellationToken).ConfigureAwait(false);
        ILoggerFactory loggers = HostBuilder.Loggers(host);
        ILogger log = loggers.CreateLogger("VirtioPanic.Host");
        var manager = host.Services.GetRequiredService<PolicyService>();
        WatchdogDeviceOptions deviceOptions = HostBuilder.DeviceOptions(host);
        VhostUserBackendOptions backendOptions = HostBuilder.BackendOptions(builder.Configuration);
        QmpVmControlOptions? qmpDefaults = QmpOptions(builder.Configuration, "unused");

        // Ctrl-C and SIGTERM reach the host's console lifetime, which stops the application.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping);
        var served = new List<Served>();
        ManagementSocket? control = null;
        try
        {
            foreach (ServedVm vm in vms)
            {
                served.Add(Served.Start(vm, deviceOptions, backendOptions, qmpDefaults, manager, loggers, log));
            }

            string? controlPath = builder.Configuration["Control:SocketPath"] is { Length: > 0 } c ? c : null;
            control = controlPath is null ? null : new ManagementSocket(manager, controlPath, loggers.CreateLogger("VirtioPanic.Control"));
            await Task.WhenAll(served.Select(s => s.RunAsync(stop.Token))).ConfigureAwait(false);
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

            foreach (Served each in served)
            {
                await each.DisposeAsync().ConfigureAwait(false);
            }
        }

        return 0;
    }

    // The VMs to serve: the command line's one, or section Serve:Vms. Returns the first mistake.
    private static (List<ServedVm> Vms, string? Error) Vms(ConfigurationManager configuration, string? socketPath)
    {
        string defaultId = configuration["Device:DeviceId"] is { Length: > 0 } id ? id : new WatchdogDeviceOptions().DeviceId;
        if (socketPath is not null)
        {
            return ([new ServedVm(defaultId, socketPath, configuration["Qmp:SocketPath"] is { Length: > 0 } q ? q : null)], null);
        }

        var vms = new List<ServedVm>();
        IConfigurationSection[] entries = [.. configuration.GetSection("Serve:Vms").GetChildren()];
        if (entries.Length == 0)
        {
            return (vms, "nothing to serve: give --vhost-user PATH, or list VMs in Serve:Vms (each with DeviceId, VhostUser and optionally Qmp and VcpuCount)");
        }

        string[] known = ["DeviceId", "VhostUser", "Qmp", "VcpuCount"];
        foreach (IConfigurationSection entry in entries)
        {
            if (entry.GetChildren().FirstOrDefault(k => !known.Contains(k.Key, StringComparer.OrdinalIgnoreCase)) is { } unknown)
            {
                return (vms, $"{unknown.Path}: unknown key; a VM has {string.Join(", ", known)}");
            }

            string? device = entry["DeviceId"];
            string? socket = entry["VhostUser"];
            if (string.IsNullOrEmpty(device) || string.IsNullOrEmpty(socket))
            {
                return (vms, $"{entry.Path}: needs DeviceId and VhostUser (the vhost-user socket path)");
            }

            if (vms.Any(v => string.Equals(v.DeviceId, device, StringComparison.Ordinal)))
            {
                return (vms, $"{entry.Path}:DeviceId: '{device}' is used twice; every VM's device needs its own id");
            }

            if (vms.Any(v => string.Equals(v.VhostUserSocket, socket, StringComparison.Ordinal)))
            {
                return (vms, $"{entry.Path}:VhostUser: '{socket}' is used twice; every VM needs its own socket");
            }

            int? vcpus = null;
            if (entry["VcpuCount"] is { } text)
            {
                if (!int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int count)
                    || count is < 0 or > WatchdogDeviceOptions.MaxVcpuCount)
                {
                    return (vms, $"{entry.Path}:VcpuCount = '{text}': allowed: 0 (no per-vCPU stall detection) to {WatchdogDeviceOptions.MaxVcpuCount}, the VM's vCPU count");
                }

                vcpus = count;
            }

            vms.Add(new ServedVm(device, socket, entry["Qmp"] is { Length: > 0 } qmp ? qmp : null, vcpus));
        }

        return (vms, null);
    }

    // One VM's device, VM control (QMP or none), binding and back end.
    private sealed class Served : IAsyncDisposable
    {
        private readonly WatchdogDevice _device;
        private readonly QmpVmControl? _qmp;
        private readonly FrontEndVmControl? _frontEnd;
        private readonly IDisposable? _follow;
        private readonly VhostUserBackend _backend;

        private Served(WatchdogDevice device, QmpVmControl? qmp, FrontEndVmControl? frontEnd, IDisposable? follow, VhostUserBackend backend)
        {
            _device = device;
            _qmp = qmp;
            _frontEnd = frontEnd;
            _follow = follow;
            _backend = backend;
        }

        internal static Served Start(ServedVm vm, WatchdogDeviceOptions deviceOptions, VhostUserBackendOptions backendOptions, QmpVmControlOptions? qmpDefaults, PolicyService manager, ILoggerFactory loggers, ILogger log)
        {
            var device = new WatchdogDevice(new WatchdogDeviceOptions
            {
                DeviceId = vm.DeviceId,
                DefaultTimeout = deviceOptions.DefaultTimeout,
                MinTimeout = deviceOptions.MinTimeout,
                MaxTimeout = deviceOptions.MaxTimeout,
                ResumeGrace = deviceOptions.ResumeGrace,
                StartPaused = deviceOptions.StartPaused,
                Features = deviceOptions.Features,
                EventCapacity = deviceOptions.EventCapacity,

                // vhost-user: the back end sees no vCPUs, so stall detection counts VM run time (WDT-DEV-49).
                VcpuCount = vm.VcpuCount ?? deviceOptions.VcpuCount,
                VcpuStallTimeout = deviceOptions.VcpuStallTimeout,
                VcpuStallSecondStage = deviceOptions.VcpuStallSecondStage,
            }, TimeProvider.System, loggers.CreateLogger("VirtioPanic.Device"));

            // With a QMP monitor the policy's actions are carried out on the VM and the VM's run
            // state drives the watchdog (QmpVmControl.FollowDevice); without one the front end
            // owns the VM and every action is reported as not carried out.
            QmpVmControl? qmp = vm.QmpSocket is null ? null : new QmpVmControl(new QmpVmControlOptions
            {
                SocketPath = vm.QmpSocket,
                CommandTimeout = qmpDefaults?.CommandTimeout ?? new QmpVmControlOptions { SocketPath = vm.QmpSocket }.CommandTimeout,
                DumpTimeout = qmpDefaults?.DumpTimeout ?? new QmpVmControlOptions { SocketPath = vm.QmpSocket }.DumpTimeout,
                ReconnectDelay = qmpDefaults?.ReconnectDelay ?? new QmpVmControlOptions { SocketPath = vm.QmpSocket }.ReconnectDelay,
            }, loggers.CreateLogger("VirtioPanic.Qmp"));
            FrontEndVmControl? frontEnd = qmp is null ? new FrontEndVmControl(log, TimeProvider.System) : null;
            IDisposable? follow = qmp?.FollowDevice(device);
            manager.Attach(device, (IVmControl?)qmp ?? frontEnd!);
            DevicePolicy policy = manager.GetPolicy(device.Id);
            HostLog.Serving(log, device.Id, vm.VhostUserSocket, PolicyNames.Of(policy.OnPanic), PolicyNames.Of(policy.OnWatchdog), vm.QmpSocket ?? "none (the front end owns the VM)");
            var backend = new VhostUserBackend(device, vm.VhostUserSocket, loggers.CreateLogger("VirtioPanic.VhostUser"), backendOptions);
            return new Served(device, qmp, frontEnd, follow, backend);
        }

        internal Task RunAsync(CancellationToken stop) => _backend.RunAsync(stop);

        public async ValueTask DisposeAsync()
        {
            _backend.Dispose();
            _follow?.Dispose();
            _frontEnd?.LogSuppressed();
            if (_qmp is not null)
            {
                await _qmp.DisposeAsync().ConfigureAwait(false);
            }

            _device.Dispose();
        }
    }

    // Section Qmp: SocketPath (serve --qmp), CommandTimeout, DumpTimeout, ReconnectDelay.
    private static QmpVmControlOptions? QmpOptions(ConfigurationManager configuration, string? fallbackPath = null)
    {
        IConfigurationSection section = configuration.GetSection("Qmp");
        if ((section["SocketPath"] is { Length: > 0 } p ? p : fallbackPath) is not { } path)
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
