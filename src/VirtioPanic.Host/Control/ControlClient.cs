using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace VirtioPanic.Host.Control;

// The client side of `serve --control PATH` (VirtioPanic.Hosting.Control.ManagementSocket), in
// the style of virsh: one command, its answer on stdout, an error on stderr with exit code 1;
// `events` follows the handled events until Ctrl-C. QMP framing: greeting, qmp_capabilities, then
// {"execute", "arguments", "id"}.
internal static class ControlClient
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);
    private static readonly JsonSerializerOptions s_indented = new() { WriteIndented = true };

    internal static async Task<int> ExecuteAsync(string socketPath, string command, JsonObject? arguments, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        try
        {
            using var connection = await Connection.OpenAsync(socketPath, cancellationToken).ConfigureAwait(false);
            JsonNode? reply = await connection.ExecuteAsync(command, arguments, cancellationToken).ConfigureAwait(false);
            if (reply?["error"] is JsonNode failure)
            {
                await error.WriteLineAsync($"error: {failure["desc"]} ({failure["class"]})").ConfigureAwait(false);
                return 1;
            }

            await output.WriteLineAsync(reply?["return"]?.ToJsonString(s_indented) ?? "{}").ConfigureAwait(false);
            return 0;
        }
        catch (Exception e) when (e is SocketException or IOException or JsonException or TimeoutException)
        {
            await error.WriteLineAsync($"error: management socket {socketPath}: {e.Message}").ConfigureAwait(false);
            return 1;
        }
    }

    internal static async Task<int> FollowEventsAsync(string socketPath, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        try
        {
            using var connection = await Connection.OpenAsync(socketPath, cancellationToken).ConfigureAwait(false);
            await error.WriteLineAsync($"following the events of {socketPath} (Ctrl-C ends)").ConfigureAwait(false);
            await error.FlushAsync(cancellationToken).ConfigureAwait(false);
            while (await connection.ReadLineAsync(Timeout.InfiniteTimeSpan, cancellationToken).ConfigureAwait(false) is { } line)
            {
                await output.WriteLineAsync(line).ConfigureAwait(false);
                await output.FlushAsync(cancellationToken).ConfigureAwait(false);
            }

            await error.WriteLineAsync("the service closed the management socket").ConfigureAwait(false);
            return 1;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return 0;
        }
        catch (Exception e) when (e is SocketException or IOException or JsonException or TimeoutException)
        {
            await error.WriteLineAsync($"error: management socket {socketPath}: {e.Message}").ConfigureAwait(false);
            return 1;
        }
    }

    private sealed class Connection : IDisposable
    {
        private readonly Socket _socket;
        private readonly StreamReader _reader;
        private int _id;

        private Connection(Socket socket)
        {
            _socket = socket;
            _reader = new StreamReader(new NetworkStream(socket, ownsSocket: false), Encoding.UTF8);
        }

        internal static async Task<Connection> OpenAsync(string path, CancellationToken cancellationToken)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(s_timeout);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), timeout.Token).ConfigureAwait(false);
            }
            catch
            {
                socket.Dispose();
                throw;
            }

            var connection = new Connection(socket);
            _ = await connection.ReadLineAsync(s_timeout, cancellationToken).ConfigureAwait(false) ?? throw new IOException("closed before its greeting");
            JsonNode? ready = await connection.ExecuteAsync("qmp_capabilities", null, cancellationToken).ConfigureAwait(false);
            if (ready?["return"] is null)
            {
                connection.Dispose();
                throw new IOException("capabilities negotiation failed: " + ready?.ToJsonString());
            }

            return connection;
        }

        internal async Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments, CancellationToken cancellationToken)
        {
            int id = ++_id;
            var message = new JsonObject { ["execute"] = command, ["id"] = id };
            if (arguments is not null)
            {
                message["arguments"] = arguments;
            }

            await _socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString() + "\n"), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            while (await ReadLineAsync(s_timeout, cancellationToken).ConfigureAwait(false) is { } line)
            {
                JsonNode? reply = JsonNode.Parse(line);
                if (reply?["event"] is null && reply?["id"]?.GetValue<int>() == id)
                {
                    return reply;
                }
            }

            throw new IOException("the service closed the connection");
        }

        internal async Task<string?> ReadLineAsync(TimeSpan timeout, CancellationToken cancellationToken)
        {
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            if (timeout != Timeout.InfiniteTimeSpan)
            {
                limit.CancelAfter(timeout);
            }

            try
            {
                return await _reader.ReadLineAsync(limit.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"no answer within {timeout.TotalSeconds:0} s");
            }
        }

        public void Dispose()
        {
            _reader.Dispose();
            _socket.Dispose();
        }
    }
}
