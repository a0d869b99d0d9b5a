using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;

namespace VirtioPanic.Hosting.Tests.Rig;

// The policy service on a generic host with a FakeTimeProvider, a journal in a temporary directory,
// one guest device and a recording VM control.
internal sealed class PolicyRig : IAsyncDisposable
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(15);

    private readonly Channel<HandledEvent> _handled = Channel.CreateUnbounded<HandledEvent>();
    private readonly bool _ownsDirectory;

    private PolicyRig(IHost host, FakeTimeProvider time, GuestRig guest, FakeVmControl vm, TempDirectory directory, bool ownsDirectory)
    {
        Host = host;
        Time = time;
        Guest = guest;
        Vm = vm;
        Directory = directory;
        _ownsDirectory = ownsDirectory;
        Manager.EventHandled += (_, e) => _handled.Writer.TryWrite(e);
    }

    public IHost Host { get; }

    public FakeTimeProvider Time { get; }

    public GuestRig Guest { get; }

    public FakeVmControl Vm { get; }

    public TempDirectory Directory { get; }

    public PolicyService Manager => Host.Services.GetRequiredService<PolicyService>();

    public string JournalPath => Directory.File("journal.jsonl");

    public static async Task<PolicyRig> StartAsync(DevicePolicy? policy = null, Action<VirtioPanicOptions>? configure = null, TempDirectory? directory = null, bool start = true, Action<IServiceCollection>? services = null, Func<FakeTimeProvider, GuestRig>? guest = null, string deviceId = "wdt0")
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2025, 6, 1, 12, 0, 0, TimeSpan.Zero));
        TempDirectory dir = directory ?? new TempDirectory();
        HostApplicationBuilder builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddSingleton<TimeProvider>(time);
        builder.Services.AddSingleton(time);   // for a test's own TimeProvider over the same clock
        services?.Invoke(builder.Services);
        builder.Services.AddVirtioPanic(o =>
        {
            o.JournalPath = dir.File("journal.jsonl");
            o.DumpDirectory = dir.File("dumps");
            o.Policy = policy ?? new DevicePolicy();
            configure?.Invoke(o);
        });
        IHost host = builder.Build();
        GuestRig machine = guest?.Invoke(time) ?? new GuestRig(time, deviceId);
        var vm = new FakeVmControl(machine.Device);
        var rig = new PolicyRig(host, time, machine, vm, dir, ownsDirectory: directory is null);
        rig.Manager.Attach(machine.Device, vm);
        if (start)
        {
            await host.StartAsync().ConfigureAwait(false);
        }

        return rig;
    }

    // The next handled item (event, deadline or request), or fail after a bounded wait.
    public async Task<HandledEvent> NextAsync()
    {
        using var timeout = new CancellationTokenSource(s_wait);
        try
        {
            return await _handled.Reader.ReadAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"nothing was handled within {s_wait}");
            throw;
        }
    }

    // Skips items until one with the given name arrives.
    public async Task<HandledEvent> NextAsync(string name)
    {
        while (true)
        {
            HandledEvent handled = await NextAsync().ConfigureAwait(false);
            if (handled.Name == name)
            {
                return handled;
            }
        }
    }

    // Waits until the service has handled everything the device reported so far (nothing queued,
    // nothing holding the device's gate), then returns what was handled and not yet taken with
    // NextAsync. Condition-based: no quiet period.
    public async Task<HandledEvent[]> IdleAsync()
    {
        await Manager.WhenIdleAsync(Guest.Device.Id).WaitAsync(s_wait).ConfigureAwait(false);
        var items = new List<HandledEvent>();
        while (_handled.Reader.TryRead(out HandledEvent? handled))
        {
            items.Add(handled);
        }

        return [.. items];
    }

    public string[] JournalLines() => File.Exists(JournalPath) ? File.ReadAllLines(JournalPath) : [];

    public async ValueTask DisposeAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(s_wait);
            await Host.StopAsync(timeout.Token).ConfigureAwait(false);
        }
        finally
        {
            Host.Dispose();
            Guest.Dispose();
            if (_ownsDirectory)
            {
                Directory.Dispose();
            }
        }
    }
}
