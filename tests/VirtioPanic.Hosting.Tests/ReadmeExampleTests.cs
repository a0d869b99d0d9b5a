using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using VirtioPanic.Device;
using VirtioPanic.Hosting.Dumps;
using VirtioPanic.Hosting.Tests.Rig;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Hosting.Tests;

// The embedding examples of README.md and src/VirtioPanic.Hosting/README.md, verbatim, run: the
// smallest IVmControl, the host that attaches a device to the policy service, then a guest panic
// (a panic_events write, as a guest's panic notifier makes it) that the library's default policy
// (destroy) turns into a power-off call on that IVmControl.
public sealed class ReadmeExampleTests
{
    [Test]
    public async Task Readme_Embedding_AttachesTheDevice_AndAPanicPowersTheVmOff()
    {
        using var directory = new TempDirectory();
        string[] args = [$"--VirtioPanic:JournalPath={directory.File("journal.jsonl")}", $"--VirtioPanic:DumpDirectory={directory.File("dumps")}"];
        using GuestMemory guestMemory = GuestMemory.CreateAnonymous(1UL << 20);
        var myVmControl = new MyVm(guestMemory);

        // README-SNIPPET: README.md src/VirtioPanic.Hosting/README.md
        HostApplicationBuilder builder = Host.CreateApplicationBuilder(args);
        builder.Services.AddVirtioPanic();             // binds and validates the "VirtioPanic" section at start
        builder.Services.AddWatchdogDeviceOptions();   // binds and validates the "Device" section at start
        using IHost host = builder.Build();
        await host.StartAsync();                       // a configuration mistake fails here, naming its key

        using var device = new WatchdogDevice(host.Services.GetRequiredService<IOptions<WatchdogDeviceOptions>>().Value);
        var manager = host.Services.GetRequiredService<PolicyService>();
        manager.Attach(device, myVmControl);           // IVmControl: pause, resume, reset, power off, shutdown, dump, NMI
        string status = manager.GetStatusJson();       // devices, features, watchdog state, policies in force
        // END-README-SNIPPET

        var handled = new TaskCompletionSource<HandledEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        manager.EventHandled += (_, e) => handled.TrySetResult(e);
        device.WriteConfig(0x08, [1]); // panic_events: GUEST_PANICKED
        HandledEvent panic = await handled.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await host.StopAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status, Does.Contain("\"watchdog0\""));
            Assert.That(panic.Event, Is.InstanceOf<GuestPanickedEvent>());
            Assert.That(myVmControl.Calls, Is.EqualTo(new[] { "power-off watchdog0" }), "destroy, the library's default");
        }
    }

    [Test]
    public async Task Readme_MyVm_DumpWritesAnElfCore()
    {
        using var directory = new TempDirectory();
        using GuestMemory guestMemory = GuestMemory.CreateAnonymous(1UL << 20);
        var vm = new MyVm(guestMemory);
        string path = directory.File("vm.core");

        VmControlResult result = await vm.DumpGuestMemoryAsync(new VmActionContext { DeviceId = "wdt0", Operation = VmOperation.DumpGuestMemory, PolicyAction = "dump" }, path, CancellationToken.None);
        byte[] head = new byte[18];
        await using (FileStream file = File.OpenRead(path))
        {
            await file.ReadExactlyAsync(head);
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Succeeded, Is.True);
            Assert.That(vm.Calls, Is.EqualTo(new[] { "dump wdt0" }));
            Assert.That(head[..4], Is.EqualTo("\u007fELF"u8.ToArray()));
            Assert.That(BitConverter.ToUInt16(head, 16), Is.EqualTo(4), "ET_CORE");
            Assert.That(new FileInfo(path).Length, Is.GreaterThan(1L << 20));
        }
    }

    // README-SNIPPET: src/VirtioPanic.Hosting/README.md
    internal sealed class MyVm(GuestMemory guestMemory) : IVmControl
    {
        public ConcurrentQueue<string> Calls { get; } = new();

        public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) => Done("pause", context);

        public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) => Done("resume", context);

        public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken) => Done("reset", context);

        public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken) => Done("power-off", context);

        public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) => Done("shutdown", context);

        public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) => Done("nmi", context);

        public async ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken)
        {
            await using FileStream file = File.Create(path);
            await ElfCoreWriter.WriteAsync(file, guestMemory, [new ElfCoreCpu(0)], cancellationToken);
            return await Done("dump", context);
        }

        private ValueTask<VmControlResult> Done(string operation, VmActionContext context)
        {
            Calls.Enqueue($"{operation} {context.DeviceId}");   // your hypervisor acts on the VM here
            return ValueTask.FromResult(VmControlResult.Success);
        }
    }
    // END-README-SNIPPET
}
