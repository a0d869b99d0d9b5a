using VirtioPanic.VhostUser.Tests.Devices;
using VirtioPanic.VhostUser.Tests.RealKernel;

namespace VirtioPanic.VhostUser.Tests.Protocol;

/// <summary>A back end on a fresh socket, serving a test device, and helpers to talk to it.</summary>
internal sealed class BackendFixture : IAsyncDisposable
{
    private readonly string _directory;

    internal BackendFixture(EntropyTestDevice device, VhostUserBackendOptions? options = null)
    {
        _directory = TestPaths.CreateTempDirectory("vp-vu");
        Device = device;
        Host = new VhostUserBackendHost(device, Path.Combine(_directory, "backend.sock"), options);
    }

    internal EntropyTestDevice Device { get; }

    internal VhostUserBackendHost Host { get; }

    internal VhostUserStatistics Statistics => Host.Backend.Statistics;

    internal FakeFrontEnd Connect() => new(Host.SocketPath);

    /// <summary>Waits (bounded) until the back end has fully closed <paramref name="count"/> connections.</summary>
    internal void WaitConnectionsClosed(long count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Statistics.ConnectionsClosed < count && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(10);
        }

        Assert.That(Statistics.ConnectionsClosed, Is.GreaterThanOrEqualTo(count), "the back end did not finish closing the connection");
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync().ConfigureAwait(false);
        Directory.Delete(_directory, recursive: true);
    }
}
