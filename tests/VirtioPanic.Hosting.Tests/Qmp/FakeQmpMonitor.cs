using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace VirtioPanic.Hosting.Tests.Qmp;

/// <summary>
/// A scripted QMP monitor on a Unix socket: the test accepts each connection, sends the greeting
/// and whatever replies, events or garbage the case needs, and reads the commands the client sent.
/// Every read is bounded in time.
/// </summary>
internal sealed class FakeQmpMonitor : IDisposable
{
    internal const string Greeting = """{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 10}, "package": ""}, "capabilities": ["oob"]}}""";
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(10);

    private readonly Socket _listener;

    internal FakeQmpMonitor(string socketPath)
    {
        SocketPath = socketPath;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        _listener.Listen(4);
    }

    internal string SocketPath { get; }

    /// <summary>Accepts the next connection, greets it and, unless told not to, completes the capabilities handshake.</summary>
    internal async Task<Connection> AcceptAsync(bool handshake = true, string greeting = Greeting)
    {
        using var timeout = new CancellationTokenSource(s_timeout);
        Socket socket = await _listener.AcceptAsync(timeout.Token);
        var connection = new Connection(socket);
        if (greeting.Length > 0)
        {
            await connection.SendAsync(greeting);
        }

        if (handshake)
        {
            using JsonDocument capabilities = await connection.ReadCommandAsync();
            Assert.That(capabilities.RootElement.GetProperty("execute").GetString(), Is.EqualTo("qmp_capabilities"), "the first command leaves negotiation mode");
            await connection.SendAsync("""{"return": {}}""");
        }

        return connection;
    }

    public void Dispose()
    {
        _listener.Dispose();
        File.Delete(SocketPath);
    }

    internal sealed class Connection : IDisposable
    {
        private readonly Socket _socket;
        private readonly StreamReader _reader;

        internal Connection(Socket socket)
        {
            _socket = socket;
            _reader = new StreamReader(new NetworkStream(socket, ownsSocket: false), Encoding.UTF8);
        }

        internal Task SendAsync(string json) => SendRawAsync(json + "\r\n");

        internal async Task SendRawAsync(string text)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            await _socket.SendAsync(bytes, SocketFlags.None);
        }

        /// <summary>Reads the client's next command; fails the test after 10 s.</summary>
        internal async Task<JsonDocument> ReadCommandAsync()
        {
            using var timeout = new CancellationTokenSource(s_timeout);
            string? line = await _reader.ReadLineAsync(timeout.Token);
            Assert.That(line, Is.Not.Null, "the client closed the connection");
            return JsonDocument.Parse(line!);
        }

        /// <summary>Reads a command and answers it with a return value, echoing its id.</summary>
        internal async Task<string> AnswerAsync(string returnJson = "{}")
        {
            using JsonDocument command = await ReadCommandAsync();
            string name = command.RootElement.GetProperty("execute").GetString()!;
            await SendAsync($$"""{"return": {{returnJson}}, "id": {{command.RootElement.GetProperty("id").GetRawText()}}}""");
            return name;
        }

        /// <summary>True when the client closes its side within 10 s.</summary>
        internal async Task<bool> ClientClosedAsync()
        {
            using var timeout = new CancellationTokenSource(s_timeout);
            try
            {
                while (await _reader.ReadLineAsync(timeout.Token) is not null)
                {
                }

                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
            catch (IOException)
            {
                return true;
            }
        }

        public void Dispose()
        {
            _reader.Dispose();
            _socket.Dispose();
        }
    }
}
