using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using VirtioPanic.Device;
using VirtioPanic.Hosting;

// The child process of JournalTests' crash tests. Exits by itself after 60 s should the parent go away.
//
// block <journal>: attaches a device whose VM control prints "ACTING" and then blocks, makes the
//   guest panic, and once the action is under way makes it panic again (the device accepts it and
//   the guest's write returns; the event waits in the device's channel behind the blocked one) and
//   prints "ACCEPTED". Killed then, the first panic was decided but never acted on and the second
//   accepted but never decided.
// storm <journal> <devices>: that many devices, each panicking in a loop on its own thread (a
//   vCPU), under a VM control that sometimes completes at once and sometimes a little later;
//   prints "ack <device> <sequence>" after each panic_events write returned, until killed.
// qmp <journal> <qmp-socket> destroy|grace|escalation: one device whose VM control is a real QmpVmControl on
//   the parent's scripted monitor; once connected (the VM's run state read), the guest panics and
//   the child prints "PANICKED", then "HANDLED <action>" for each handled event. destroy: the
//   policy's `quit` waits for a monitor that never answers (killed during the call); grace: restart
//   after a 30 s grace window (killed inside it).
//   escalation: the panic escalation "preserve; 10s restart" (the parent answers `stop`; killed
//   after "HANDLED preserve", step 1 is done and step 2 still due).
if (args.Length < 2 || args[0] is not ("block" or "storm" or "qmp") || (args[0] == "qmp" && args.Length < 4))
{
    Console.Error.WriteLine("usage: VirtioPanic.Hosting.CrashChild block <journal> | storm <journal> <devices> | qmp <journal> <qmp-socket> destroy|grace|escalation");
    return 64;
}

if (args[0] == "qmp")
{
    return await QmpChild.RunAsync(args[1], args[2], args[3]);
}

bool storm = args[0] == "storm";
HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
builder.Services.AddVirtioPanic(o =>
{
    o.JournalPath = args[1];
    o.Policy = new DevicePolicy { OnPanic = PanicAction.Destroy, StormThreshold = 0 };
    if (storm)
    {
        // Rotate often, and keep every file, so the parent can check every record.
        o.JournalMaxFileSize = 64 * 1024;
        o.JournalMaxFiles = 100;
    }
});
using IHost host = builder.Build();
var manager = host.Services.GetRequiredService<PolicyService>();
if (!storm)
{
    using var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "crash-child" });
    var vm = new BlockingVmControl();
    manager.Attach(device, vm);
    await host.StartAsync();
    device.WriteConfig(8, [1, 0, 0, 0]);
    if (vm.Acting.Wait(TimeSpan.FromSeconds(30)))
    {
        device.WriteConfig(8, [1, 0, 0, 0]);
        Console.Out.WriteLine("ACCEPTED");
        Console.Out.Flush();
    }

    await Task.Delay(TimeSpan.FromSeconds(60));
    return 3;
}

int count = int.Parse(args[2], CultureInfo.InvariantCulture);
var devices = new WatchdogDevice[count];
for (int i = 0; i < count; i++)
{
    // Room for every event of the run, so none is coalesced and each has its own decision.
    devices[i] = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "storm" + i.ToString(CultureInfo.InvariantCulture), EventCapacity = 1 << 16 });
    manager.Attach(devices[i], new JitteryVmControl(i));
}

await host.StartAsync();
var output = TextWriter.Synchronized(Console.Out);
foreach (WatchdogDevice device in devices)
{
    var vcpu = new Thread(() =>
    {
        while (true)
        {
            device.WriteConfig(8, [1, 0, 0, 0]);
            long sequence = device.GetStatus().LastEvent?.Sequence ?? -1;
            output.WriteLine($"ack {device.Id} {sequence.ToString(CultureInfo.InvariantCulture)}");
            output.Flush();
            Thread.Sleep(1);
        }
    })
    { IsBackground = true };
    vcpu.Start();
}

await Task.Delay(TimeSpan.FromSeconds(60));
return 3;

internal sealed class BlockingVmControl : IVmControl
{
    internal ManualResetEventSlim Acting { get; } = new();

    public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    private ValueTask<VmControlResult> Block()
    {
        // The decision is journaled; the action never completes.
        Console.Out.WriteLine("ACTING");
        Console.Out.Flush();
        Acting.Set();
        Thread.Sleep(Timeout.Infinite);
        return ValueTask.FromResult(VmControlResult.Success);
    }
}

// Completes at once, or after up to 2 ms, so a kill lands before, during and after actions.
internal sealed class JitteryVmControl : IVmControl
{
    private readonly Random _random;

    internal JitteryVmControl(int seed) => _random = new Random(seed);

    public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) => Act(cancellationToken);

    public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) => Act(cancellationToken);

    public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken) => Act(cancellationToken);

    public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken) => Act(cancellationToken);

    public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) => Act(cancellationToken);

    public ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken) => Act(cancellationToken);

    public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) => Act(cancellationToken);

    private async ValueTask<VmControlResult> Act(CancellationToken cancellationToken)
    {
        // Only the device's pump calls this (one call at a time per device), so the Random is not shared.
        int delay = _random.Next(-2, 3);
        if (delay > 0)
        {
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        }

        return VmControlResult.Success;
    }
}

internal static class QmpChild
{
    internal static async Task<int> RunAsync(string journal, string socket, string mode)
    {
        HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddVirtioPanic(o =>
        {
            o.JournalPath = journal;
            o.Policy = mode switch
            {
                "grace" => new DevicePolicy { OnPanic = PanicAction.Restart, PanicGracePeriod = TimeSpan.FromSeconds(30), StormThreshold = 0 },
                "escalation" => new DevicePolicy { OnPanic = PanicAction.Preserve, PanicEscalation = [new(TimeSpan.FromSeconds(10), PanicAction.Restart)], StormThreshold = 0 },
                _ => new DevicePolicy { OnPanic = PanicAction.Destroy, StormThreshold = 0 },
            };
        });
        using IHost host = builder.Build();
        var manager = host.Services.GetRequiredService<PolicyService>();
        var output = TextWriter.Synchronized(Console.Out);
        manager.EventHandled += (_, handled) =>
        {
            output.WriteLine("HANDLED " + handled.PolicyAction);
            output.Flush();
        };
        using var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "crash-child" });
        await using var vm = new VirtioPanic.Hosting.Qmp.QmpVmControl(new VirtioPanic.Hosting.Qmp.QmpVmControlOptions { SocketPath = socket, CommandTimeout = TimeSpan.FromSeconds(60) });
        if (!await vm.WaitConnectedAsync(TimeSpan.FromSeconds(30)))
        {
            Console.Error.WriteLine("the monitor was not reached");
            return 4;
        }

        manager.Attach(device, vm);
        await host.StartAsync();
        device.WriteConfig(8, [1, 0, 0, 0]);
        output.WriteLine("PANICKED");
        output.Flush();
        await Task.Delay(TimeSpan.FromSeconds(60));
        return 3;
    }
}

