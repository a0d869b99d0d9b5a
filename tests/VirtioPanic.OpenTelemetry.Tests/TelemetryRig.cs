using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Watchdog;
using VirtioPanic.Hosting;
using VirtioPanic.Transport.Pci;

namespace VirtioPanic.OpenTelemetry.Tests;

// The policy service on a generic host wired with AddVirtioPanicTelemetry and the in-memory
// exporters, a FakeTimeProvider, a journal in a temporary directory, and one watchdog device
// behind virtio-pci on the guest-driver harness (a booted kernel and the harness's driver).
internal sealed class TelemetryRig : IAsyncDisposable
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(15);
    private readonly string _directory = Directory.CreateTempSubdirectory("virtiopanic-otel-").FullName;
    private readonly System.Threading.Channels.Channel<HandledEvent> _handled = System.Threading.Channels.Channel.CreateUnbounded<HandledEvent>();
    private readonly GuestKernel _kernel;
    private WatchdogDriver? _driver;
    private bool _stopped;

    private TelemetryRig(string deviceId)
    {
        HostApplicationBuilder builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddSingleton<TimeProvider>(Time);
        builder.Services.AddVirtioPanic(o =>
        {
            o.JournalPath = Path.Combine(_directory, "journal.jsonl");
            o.DumpDirectory = Path.Combine(_directory, "dumps");
            o.Policy = new DevicePolicy { OnPanic = PanicAction.Restart, OnWatchdog = WatchdogAction.Reset };
        });
        builder.Services.AddOpenTelemetry()
            .AddVirtioPanicTelemetry()
            .WithMetrics(m => m.AddInMemoryExporter(Metrics))
            .WithLogging(l => l.AddInMemoryExporter(Logs))
            .WithTracing(t => t.AddInMemoryExporter(Spans));
        Host = builder.Build();

        Machine = new TestMachine(new TestMachineOptions { Clock = Time });
        Device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = deviceId, DefaultTimeout = TimeSpan.FromSeconds(5), MinTimeout = TimeSpan.FromSeconds(1), ResumeGrace = TimeSpan.FromSeconds(1) }, Time);
        Pci = Machine.AddPciDevice(Device);
        _kernel = GuestKernel.Boot(Machine, new GuestKernelOptions { HangTimeout = TimeSpan.FromSeconds(10) });
        Manager.EventHandled += (_, e) =>
        {
            lock (Handled)
            {
                Handled.Add(e);
            }

            _handled.Writer.TryWrite(e);
        };
        Manager.Attach(Device, new AcceptingVm());
    }

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 1, 1, 12, 0, 0, TimeSpan.Zero));

    public IHost Host { get; }

    public TestMachine Machine { get; }

    public WatchdogDevice Device { get; }

    public VirtioPciFunction Pci { get; }

    public List<Metric> Metrics { get; } = [];

    public List<LogRecord> Logs { get; } = [];

    public List<System.Diagnostics.Activity> Spans { get; } = [];

    // Every handled event, in order.
    public List<HandledEvent> Handled { get; } = [];

    public PolicyService Manager => Host.Services.GetRequiredService<PolicyService>();

    public static async Task<TelemetryRig> StartAsync(string deviceId)
    {
        var rig = new TelemetryRig(deviceId);
        await rig.Host.StartAsync().ConfigureAwait(false);
        return rig;
    }

    // The driver's probe, then the watchdog core's start: the watchdog is armed.
    public void BootAndArm()
    {
        _driver = _kernel.Run(() => WatchdogDriver.Probe(_kernel.FindVirtioDevice(WatchdogDevice.VirtioDeviceId)));
        Assert.That(_kernel.Run(() => _driver.Start()), Is.EqualTo(WatchdogResult.Ok));
    }

    // The minimal path (panic_events) with an unsupported bit besides PANICKED: a panic and a protocol error.
    public void PanicWithUnknownBit() =>
        _kernel.Run(() => _kernel.FindVirtioDevice(WatchdogDevice.VirtioDeviceId).WriteConfigUInt32(0x08, 0x1u | 0x80u));

    public async Task<HandledEvent> NextAsync(string name)
    {
        using var timeout = new CancellationTokenSource(s_wait);
        while (true)
        {
            HandledEvent handled = await _handled.Reader.ReadAsync(timeout.Token).ConfigureAwait(false);
            if (handled.Name == name)
            {
                return handled;
            }
        }
    }

    // Collects and exports now (the periodic reader would wait a minute).
    public void FlushMetrics()
    {
        Metrics.Clear();
        Assert.That(Host.Services.GetRequiredService<MeterProvider>().ForceFlush(10_000), Is.True);
    }

    // Stops the host: the service handles what is still queued, the exporter then unsubscribes.
    public async Task StopAsync()
    {
        if (!_stopped)
        {
            _stopped = true;
            await Host.StopAsync().ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        Host.Dispose();
        _kernel.Dispose();
        Device.Dispose();
        Machine.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private sealed class AcceptingVm : IVmControl
    {
        public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) => Ok();

        public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) => Ok();

        public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken) => Ok();

        public ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken) => Ok();

        public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) => Ok();

        public ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken) => Ok();

        public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) => Ok();

        private static ValueTask<VmControlResult> Ok() => ValueTask.FromResult(VmControlResult.Success);
    }
}
