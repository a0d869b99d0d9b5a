namespace VirtioPanic.Device.Tests;

// The package readme's example (src/VirtioPanic.Device/README.md), verbatim, run: a panic_events
// write (what a guest's panic notifier does) reaches the reader it starts.
[NonParallelizable] // it redirects Console.Out
public sealed class ReadmeExampleTests
{
    [Test]
    public async Task PackageReadme_EventReader_SeesAGuestPanic()
    {
        using var cancel = new CancellationTokenSource();
        CancellationToken cancellationToken = cancel.Token;
        using var console = new StringWriter();
        TextWriter original = Console.Out;
        Console.SetOut(console);
        try
        {
            // README-SNIPPET: src/VirtioPanic.Device/README.md
            using var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "wdt0", DefaultTimeout = TimeSpan.FromSeconds(30) });
            // Put it on a transport (VirtioPanic.Transport) or behind vhost-user (VirtioPanic.VhostUser), then
            // read what the guest reports and when the watchdog expires:
            Task reader = ReadEventsAsync(device, cancellationToken);

            static async Task ReadEventsAsync(WatchdogDevice device, CancellationToken cancellationToken)
            {
                await foreach (WatchdogEvent e in device.Events.ReadAllAsync(cancellationToken))
                {
                    if (e is GuestPanickedEvent panic)
                    {
                        Console.WriteLine($"{panic.DeviceId} panicked: {panic.Message ?? "(no message)"}");
                    }
                }
            }
            // END-README-SNIPPET

            device.WriteConfig(0x08, [1]); // panic_events: GUEST_PANICKED, as the minimal panic path writes it
            for (int i = 0; i < 500 && !console.ToString().Contains("panicked", StringComparison.Ordinal); i++)
            {
                await Task.Delay(10);
            }

            await cancel.CancelAsync();
            Assert.That(async () => await reader, Throws.InstanceOf<OperationCanceledException>(), "the reader runs until cancelled");
        }
        finally
        {
            Console.SetOut(original);
        }

        Assert.That(console.ToString(), Is.EqualTo("wdt0 panicked: (no message)" + Environment.NewLine));
    }
}
