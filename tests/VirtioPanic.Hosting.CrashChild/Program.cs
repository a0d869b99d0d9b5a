using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using VirtioPanic.Device;
using VirtioPanic.Hosting;

// The child process of JournalTests' crash test: attaches a device whose VM control prints
// "ACTING" and then blocks, makes the guest panic, and waits to be killed, so the panic is journaled
// but never acted on. Exits by itself after 60 s should the parent go away.
// Usage: VirtioPanic.Hosting.CrashChild <journal path>
if (args.Length != 1)
{
    Console.Error.WriteLine("usage: VirtioPanic.Hosting.CrashChild <journal path>");
    return 64;
}

HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
builder.Services.AddVirtioPanic(o =>
{
    o.JournalPath = args[0];
    o.Policy = new DevicePolicy { OnPanic = PanicAction.Destroy };
});
using IHost host = builder.Build();
using var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "crash-child" });
host.Services.GetRequiredService<VirtioPanicManager>().Attach(device, new BlockingVmControl());
await host.StartAsync();
device.WriteConfig(8, [1, 0, 0, 0]);
await Task.Delay(TimeSpan.FromSeconds(60));
return 3;

internal sealed class BlockingVmControl : IVmControl
{
    internal const string Marker = "ACTING";

    public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken) => Block();

    public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) => Block();

    private static ValueTask<VmControlResult> Block()
    {
        // The decision is journaled; the action never completes.
        Console.Out.WriteLine(Marker);
        Console.Out.Flush();
        Thread.Sleep(Timeout.Infinite);
        return ValueTask.FromResult(VmControlResult.Success);
    }
}
