using VirtioPanic.Device;

namespace VirtioPanic.VhostUser.Tests.Protocol;

// The package readme's example (src/VirtioPanic.VhostUser/README.md), verbatim, run: the back end
// listens, a front end connects and negotiates features, cancelling ends RunAsync.
[NonParallelizable]
internal sealed class ReadmeExampleTests
{
    [Test]
    public async Task PackageReadme_Backend_ServesAFrontEndUntilCancelled()
    {
        string directory = Directory.CreateTempSubdirectory("vp-readme-").FullName;
        string socketPath = Path.Combine(directory, "wdt.sock");
        using var cancel = new CancellationTokenSource();
        CancellationToken cancellationToken = cancel.Token;
        ulong features = 0;
        Task frontEnd = Task.Run(async () =>
        {
            for (int i = 0; i < 500 && !File.Exists(socketPath); i++)
            {
                await Task.Delay(10);
            }

            using (var qemu = new FakeFrontEnd(socketPath))
            {
                features = qemu.GetFeatures();
            }

            await cancel.CancelAsync();
        });

        try
        {
            // README-SNIPPET: src/VirtioPanic.VhostUser/README.md
            using var device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "wdt0" });
            using var backend = new VhostUserBackend(device, socketPath);
            await backend.RunAsync(cancellationToken);   // serves one front end at a time until cancelled
            // END-README-SNIPPET
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            // Cancelled, as the front end's task asked.
        }
        finally
        {
            await cancel.CancelAsync();
        }

        await frontEnd.WaitAsync(TimeSpan.FromSeconds(30));
        Directory.Delete(directory, recursive: true);

        Assert.That(features & (1UL << 32), Is.Not.Zero, "the front end was served: VIRTIO_F_VERSION_1 offered");
    }
}
