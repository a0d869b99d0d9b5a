using System.Text.Json;
using System.Text.Json.Nodes;
using VirtioPanic.Hosting.Qmp;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests.Qmp;

// The QMP framing against a scripted monitor: handshake, id correlation, error replies, events,
// and every way a monitor can fail a command (silence, going away, garbage).
public sealed class QmpClientTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(5);

    [Test]
    public async Task Connect_GreetingThenCapabilities_ReportsTheVersion()
    {
        using var directory = new TempDirectory();
        using var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
        Task<FakeQmpMonitor.Connection> accepted = monitor.AcceptAsync();

        (QmpClient? client, string? error) = await QmpClient.ConnectAsync(monitor.SocketPath, s_timeout, CancellationToken.None);
        using FakeQmpMonitor.Connection connection = await accepted;
        await using (client)
        {
            using (Assert.EnterMultipleScope())
            {
                Assert.That(error, Is.Null);
                Assert.That(client, Is.Not.Null);
                Assert.That(client!.Version, Is.EqualTo("10.2.0"));
            }
        }
    }

    [Test]
    public async Task Connect_NoGreeting_FailsWithinTheTimeout()
    {
        using var directory = new TempDirectory();
        using var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
        Task<FakeQmpMonitor.Connection> accepted = monitor.AcceptAsync(handshake: false, greeting: "");

        (QmpClient? client, string? error) = await QmpClient.ConnectAsync(monitor.SocketPath, TimeSpan.FromMilliseconds(300), CancellationToken.None);
        using FakeQmpMonitor.Connection connection = await accepted;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(client, Is.Null);
            Assert.That(error, Does.Contain("no QMP handshake"));
        }
    }

    [Test]
    public async Task Connect_CapabilitiesRefused_Fails()
    {
        using var directory = new TempDirectory();
        using var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
        Task<FakeQmpMonitor.Connection> accepted = monitor.AcceptAsync(handshake: false);
        Task<(QmpClient?, string?)> connecting = QmpClient.ConnectAsync(monitor.SocketPath, s_timeout, CancellationToken.None);
        using FakeQmpMonitor.Connection connection = await accepted;
        using (await connection.ReadCommandAsync())
        {
        }

        await connection.SendAsync("""{"error": {"class": "CommandNotFound", "desc": "nope"}}""");
        (QmpClient? client, string? error) = await connecting;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(client, Is.Null);
            Assert.That(error, Does.Contain("qmp_capabilities was not accepted"));
        }
    }

    [Test]
    public async Task Execute_RepliesOutOfOrder_EachMatchedByItsId()
    {
        await using var session = await ConnectedAsync();
        FakeQmpMonitor.Connection connection = session.Connection;
        QmpClient client = session.Client;
        {
            Task<QmpReply> first = client.ExecuteAsync("query-status", null, s_timeout, CancellationToken.None);
            using JsonDocument firstCommand = await connection.ReadCommandAsync();
            Task<QmpReply> second = client.ExecuteAsync("query-name", new JsonObject { ["x"] = 1 }, s_timeout, CancellationToken.None);
            using JsonDocument secondCommand = await connection.ReadCommandAsync();

            // Answer the second first, with an event and a reply to an unknown id in between.
            await connection.SendAsync($$"""{"return": {"name": "vm2"}, "id": {{secondCommand.RootElement.GetProperty("id").GetRawText()}}}""");
            await connection.SendAsync("""{"event": "RESUME", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}""");
            await connection.SendAsync("""{"return": {}, "id": 424242}""");
            await connection.SendAsync($$"""{"return": {"running": true, "status": "running"}, "id": {{firstCommand.RootElement.GetProperty("id").GetRawText()}}}""");
            QmpReply firstReply = await first;
            QmpReply secondReply = await second;
            QmpEvent resume = await client.Events.ReadAsync().AsTask().WaitAsync(s_timeout);

            using (Assert.EnterMultipleScope())
            {
                Assert.That(firstCommand.RootElement.GetProperty("execute").GetString(), Is.EqualTo("query-status"));
                Assert.That(firstCommand.RootElement.TryGetProperty("arguments", out _), Is.False, "no arguments member when there are none");
                Assert.That(secondCommand.RootElement.GetProperty("arguments").GetProperty("x").GetInt32(), Is.EqualTo(1));
                Assert.That(firstCommand.RootElement.GetProperty("id").GetInt64(), Is.Not.EqualTo(secondCommand.RootElement.GetProperty("id").GetInt64()));
                Assert.That(firstReply.Succeeded && firstReply.Return.GetProperty("status").GetString() == "running", Is.True);
                Assert.That(secondReply.Succeeded && secondReply.Return.GetProperty("name").GetString() == "vm2", Is.True);
                Assert.That(resume.Name, Is.EqualTo("RESUME"));
            }
        }
    }

    [Test]
    public async Task Execute_ErrorReply_CarriesClassAndDescription()
    {
        await using var session = await ConnectedAsync();
        FakeQmpMonitor.Connection connection = session.Connection;
        QmpClient client = session.Client;
        {
            Task<QmpReply> reply = client.ExecuteAsync("inject-nmi", null, s_timeout, CancellationToken.None);
            using JsonDocument command = await connection.ReadCommandAsync();
            await connection.SendAsync($$"""{"error": {"class": "GenericError", "desc": "Injecting NMI is not supported"}, "id": {{command.RootElement.GetProperty("id").GetRawText()}}}""");
            QmpReply result = await reply;

            using (Assert.EnterMultipleScope())
            {
                Assert.That(result.Status, Is.EqualTo(QmpReplyStatus.Error));
                Assert.That(result.ErrorClass, Is.EqualTo("GenericError"));
                Assert.That(result.Describe(), Is.EqualTo("GenericError: Injecting NMI is not supported"));
            }
        }
    }

    [Test]
    public async Task Execute_MonitorSilent_TimesOut()
    {
        await using var session = await ConnectedAsync();
        FakeQmpMonitor.Connection connection = session.Connection;
        QmpClient client = session.Client;
        {
            QmpReply result = await client.ExecuteAsync("system_reset", null, TimeSpan.FromMilliseconds(200), CancellationToken.None);

            Assert.That(result.Status, Is.EqualTo(QmpReplyStatus.Timeout));
        }
    }

    [Test]
    public async Task Execute_MonitorGoesAwayMidCommand_DisconnectedAtOnce_AndLaterCommandsToo()
    {
        using var directory = new TempDirectory();
        using var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
        Task<FakeQmpMonitor.Connection> accepted = monitor.AcceptAsync();
        (QmpClient? client, _) = await QmpClient.ConnectAsync(monitor.SocketPath, s_timeout, CancellationToken.None);
        FakeQmpMonitor.Connection connection = await accepted;
        await using (client)
        {
            // The timeout is long: the answer must come from the closed connection, not the clock.
            Task<QmpReply> reply = client!.ExecuteAsync("stop", null, TimeSpan.FromMinutes(5), CancellationToken.None);
            using (await connection.ReadCommandAsync())
            {
            }

            connection.Dispose();
            QmpReply result = await reply.WaitAsync(s_timeout);
            string reason = await client.Completion.WaitAsync(s_timeout);
            QmpReply later = await client.ExecuteAsync("cont", null, TimeSpan.FromMinutes(5), CancellationToken.None).WaitAsync(s_timeout);

            using (Assert.EnterMultipleScope())
            {
                Assert.That(result.Status, Is.EqualTo(QmpReplyStatus.Disconnected));
                Assert.That(reason, Does.Contain("closed"));
                Assert.That(later.Status, Is.EqualTo(QmpReplyStatus.Disconnected));
            }
        }
    }

    [TestCase("[1, 2, 3]", "not a JSON object")]
    [TestCase("{\"return\": ", "malformed JSON")]
    public async Task Receive_GarbageFromTheMonitor_EndsTheConnection(string line, string expected)
    {
        await using var session = await ConnectedAsync();
        FakeQmpMonitor.Connection connection = session.Connection;
        QmpClient client = session.Client;
        {
            await connection.SendAsync(line);
            string reason = await client.Completion.WaitAsync(s_timeout);

            Assert.That(reason, Does.Contain(expected));
        }
    }

    [Test]
    public async Task Receive_MessageLongerThanTheLimit_EndsTheConnection()
    {
        await using var session = await ConnectedAsync();
        FakeQmpMonitor.Connection connection = session.Connection;
        QmpClient client = session.Client;
        {
            // No newline, ever: the client must stop buffering at the limit, not wait for the end.
            string chunk = new('x', 64 * 1024);
            Task<string> completion = client.Completion;
            for (int sent = 0; sent <= QmpClient.MaxMessageBytes + chunk.Length && !completion.IsCompleted; sent += chunk.Length)
            {
                try
                {
                    await connection.SendRawAsync(chunk);
                }
                catch (System.Net.Sockets.SocketException)
                {
                    break;   // the client already closed
                }
            }

            string reason = await completion.WaitAsync(s_timeout);

            Assert.That(reason, Does.Contain("longer than"));
        }
    }

    // A client connected to a scripted monitor through the full handshake.
    private static async Task<Session> ConnectedAsync()
    {
        var directory = new TempDirectory();
        var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
        Task<FakeQmpMonitor.Connection> accepted = monitor.AcceptAsync();
        (QmpClient? client, string? error) = await QmpClient.ConnectAsync(monitor.SocketPath, s_timeout, CancellationToken.None);
        Assert.That(client, Is.Not.Null, error);
        return new Session(directory, monitor, await accepted, client!);
    }

    private sealed record Session(TempDirectory Directory, FakeQmpMonitor Monitor, FakeQmpMonitor.Connection Connection, QmpClient Client) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            Connection.Dispose();
            Monitor.Dispose();
            Directory.Dispose();
        }
    }
}
