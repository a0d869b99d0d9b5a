using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>Runs a <see cref="VhostUserBackend"/> for one device in the test process, on a socket in the test's work directory.</summary>
internal sealed class VhostUserBackendHost : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _run;

    internal VhostUserBackendHost(IVirtioDevice device, string socketPath, VhostUserBackendOptions? options = null)
    {
        Logger = new TestLogger();
        Backend = new VhostUserBackend(device, socketPath, Logger, options);
        _run = Backend.RunAsync(_stop.Token);
        // RunAsync binds synchronously before its first await, so the socket exists now.
        if (!File.Exists(socketPath) && _run.IsFaulted)
        {
            _run.GetAwaiter().GetResult();
        }
    }

    internal VhostUserBackend Backend { get; }

    internal TestLogger Logger { get; }

    internal string SocketPath => Backend.SocketPath;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _run.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        Backend.Dispose();
        _stop.Dispose();
        // The back end's log (every message at Trace level) goes with the test's output.
        await TestContext.Out.WriteLineAsync("--- vhost-user back end log ---\n" + Logger).ConfigureAwait(false);
    }
}
