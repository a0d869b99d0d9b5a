using System.Buffers;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Threading.Channels;

namespace VirtioPanic.Hosting.Qmp;

// Design: one connection to a QMP monitor (QEMU docs/interop/qmp-spec.rst), written once.
//
// Framing: every message is one JSON object; QEMU ends each with CRLF and accepts commands ended
// by a newline. The connection opens with the server's greeting ({"QMP": {"version": ...,
// "capabilities": [...]}}); the client leaves capabilities negotiation mode with
// {"execute": "qmp_capabilities"} and waits for {"return": {}}. After that the client sends
// {"execute": NAME, "arguments": {...}, "id": N} and the server answers with {"return": ...,
// "id": N} or {"error": {"class": C, "desc": D}, "id": N}, and sends asynchronous events
// ({"event": NAME, "data": {...}, "timestamp": {...}}) whenever they happen, interleaved with
// replies. The id is ours: every command gets a fresh one and its reply is matched by it, so
// replies may come in any order.
//
// Threads: one reader task owns the socket's receive side; it completes the pending commands
// (their continuations run asynchronously, never on the reader) and queues events into a bounded
// channel (oldest dropped: a monitor that floods events cannot grow our memory). Sends are
// serialised by a semaphore. When the connection ends (end of stream, a malformed or oversized
// message, Dispose) every pending command completes as Disconnected: nobody waits for an answer
// that cannot come.
//
// The monitor is the VMM's, not the guest's, but it is still input: a message larger than
// MaxMessageBytes or one that is not a JSON object ends the connection.
internal sealed class QmpClient : IAsyncDisposable
{
    internal const int MaxMessageBytes = 1 << 20;
    private const int EventBacklog = 256;

    private readonly Socket _socket;
    private readonly SemaphoreSlim _sendGate = new(1, 1);
    private readonly ConcurrentDictionary<long, TaskCompletionSource<QmpReply>> _pending = new();
    private readonly Channel<QmpEvent> _events = Channel.CreateBounded<QmpEvent>(new BoundedChannelOptions(EventBacklog)
    {
        FullMode = BoundedChannelFullMode.DropOldest,
        SingleWriter = true,
    });

    private readonly byte[] _receiveBuffer = new byte[16 * 1024];
    private readonly ArrayBufferWriter<byte> _line = new();
    private int _receiveStart;
    private int _receiveEnd;
    private long _nextId;
    private long _stopEventsRead;
    private Task<string>? _reader;
    private int _closed;

    private QmpClient(Socket socket)
    {
        _socket = socket;
    }

    // The monitor's QEMU version from the greeting ("10.2.0"), or "unknown".
    internal string Version { get; private set; } = "unknown";

    // Asynchronous events in arrival order (the oldest are dropped past EventBacklog).
    internal ChannelReader<QmpEvent> Events => _events.Reader;

    // STOP and SHUTDOWN events read so far, counted on the reader before it completes any later reply, so a
    // caller that reads it after a reply has arrived sees every STOP the monitor sent before that
    // reply (the Events channel is consumed on another task and may lag). Written by the reader
    // with Interlocked, read by anyone.
    internal long StopEventsRead => Interlocked.Read(ref _stopEventsRead);

    // Completes with the reason when the connection has ended.
    internal Task<string> Completion => _reader ?? Task.FromResult("not connected");

    // Connects, reads the greeting and leaves capabilities negotiation mode, all within timeout.
    // Returns null with the reason on any failure (nothing stays open then).
    internal static async Task<(QmpClient? Client, string? Error)> ConnectAsync(string socketPath, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var client = new QmpClient(socket);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), deadline.Token).ConfigureAwait(false);
            (JsonDocument? greeting, string? error) = await client.ReadMessageAsync(deadline.Token).ConfigureAwait(false);
            using (greeting)
            {
                if (greeting is null || !greeting.RootElement.TryGetProperty("QMP", out JsonElement qmp))
                {
                    await client.DisposeAsync().ConfigureAwait(false);
                    return (null, error ?? "the monitor did not greet with a QMP object");
                }

                client.Version = DescribeVersion(qmp);
            }

            await client.SendAsync(new QmpCommandMessage("qmp_capabilities", null, null), deadline.Token).ConfigureAwait(false);
            (JsonDocument? answer, error) = await client.ReadMessageAsync(deadline.Token).ConfigureAwait(false);
            using (answer)
            {
                if (answer is null || !answer.RootElement.TryGetProperty("return", out _))
                {
                    await client.DisposeAsync().ConfigureAwait(false);
                    return (null, error ?? $"qmp_capabilities was not accepted: {answer?.RootElement.GetRawText()}");
                }
            }
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            await client.DisposeAsync().ConfigureAwait(false);
            return (null, e is OperationCanceledException && !cancellationToken.IsCancellationRequested ? $"no QMP handshake within {timeout.TotalSeconds:0.#} s" : e.Message);
        }

        client._reader = Task.Run(client.ReadLoopAsync, CancellationToken.None);
        return (client, null);
    }

    // Runs one command; never throws for the monitor's behaviour (see QmpReply).
    internal async Task<QmpReply> ExecuteAsync(string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _closed) != 0)
        {
            return QmpReply.Failed(QmpReplyStatus.Disconnected, "the QMP monitor is not connected");
        }

        long id = Interlocked.Increment(ref _nextId);
        var reply = new TaskCompletionSource<QmpReply>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = reply;
        try
        {
            try
            {
                await SendAsync(new QmpCommandMessage(command, arguments, id), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
            {
                return QmpReply.Failed(QmpReplyStatus.Disconnected, $"could not send {command}: {e.Message}");
            }

            // The reader may have ended between the check above and the registration: then no
            // one completes this entry; Close completed everything registered before it set _closed.
            if (Volatile.Read(ref _closed) != 0)
            {
                _ = reply.TrySetResult(QmpReply.Failed(QmpReplyStatus.Disconnected, "the QMP monitor went away"));
            }

            try
            {
                return await reply.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                return QmpReply.Failed(QmpReplyStatus.Timeout, $"no answer to {command} within {timeout.TotalSeconds:0.#} s");
            }
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Close("closed by the client");
        if (_reader is not null)
        {
            _ = await _reader.ConfigureAwait(false);
        }

        _sendGate.Dispose();
    }

    private static string DescribeVersion(JsonElement qmp)
    {
        if (qmp.TryGetProperty("version", out JsonElement version) && version.ValueKind == JsonValueKind.Object &&
            version.TryGetProperty("qemu", out JsonElement qemu) && qemu.ValueKind == JsonValueKind.Object &&
            qemu.TryGetProperty("major", out JsonElement major) && major.TryGetInt32(out int ma) &&
            qemu.TryGetProperty("minor", out JsonElement minor) && minor.TryGetInt32(out int mi) &&
            qemu.TryGetProperty("micro", out JsonElement micro) && micro.TryGetInt32(out int mc))
        {
            return $"{ma}.{mi}.{mc}";
        }

        return "unknown";
    }

    private async Task<string> ReadLoopAsync()
    {
        string reason = "the monitor closed the connection";
        try
        {
            while (true)
            {
                (JsonDocument? message, string? error) = await ReadMessageAsync(CancellationToken.None).ConfigureAwait(false);
                if (message is null)
                {
                    reason = error ?? reason;
                    break;
                }

                using (message)
                {
                    Dispatch(message.RootElement);
                }
            }
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
        {
            reason = e.Message;
        }

        Close(reason);
        return reason;
    }

    private void Dispatch(JsonElement message)
    {
        if (message.TryGetProperty("event", out JsonElement name) && name.ValueKind == JsonValueKind.String)
        {
            JsonElement data = message.TryGetProperty("data", out JsonElement d) && d.ValueKind == JsonValueKind.Object ? d.Clone() : EmptyObject();
            // SHUTDOWN stops the VM too: QEMU then exits, or with -no-shutdown sends STOP as well
            // (qapi/run-state.json, SHUTDOWN: "Emitted when the virtual machine has shut down").
            if (name.ValueEquals("STOP"u8) || name.ValueEquals("SHUTDOWN"u8))
            {
                _ = Interlocked.Increment(ref _stopEventsRead);
            }

            _ = _events.Writer.TryWrite(new QmpEvent(name.GetString()!, data));
            return;
        }

        if (!message.TryGetProperty("id", out JsonElement idElement) || !idElement.TryGetInt64(out long id) || !_pending.TryGetValue(id, out TaskCompletionSource<QmpReply>? pending))
        {
            return;    // a reply to nothing we are waiting for (timed out, or not ours): dropped
        }

        if (message.TryGetProperty("return", out JsonElement value))
        {
            _ = pending.TrySetResult(new QmpReply(QmpReplyStatus.Ok, value.Clone(), null, null));
        }
        else if (message.TryGetProperty("error", out JsonElement error) && error.ValueKind == JsonValueKind.Object)
        {
            string errorClass = error.TryGetProperty("class", out JsonElement c) && c.ValueKind == JsonValueKind.String ? c.GetString()! : "GenericError";
            string description = error.TryGetProperty("desc", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "(no description)";
            _ = pending.TrySetResult(new QmpReply(QmpReplyStatus.Error, default, errorClass, description));
        }
        else
        {
            _ = pending.TrySetResult(QmpReply.Failed(QmpReplyStatus.Error, $"reply with neither return nor error: {message.GetRawText()}"));
        }
    }

    private static JsonElement EmptyObject()
    {
        using JsonDocument empty = JsonDocument.Parse("{}");
        return empty.RootElement.Clone();
    }

    // Reads one newline-ended message and parses it; null with the reason at end of stream or on a
    // malformed or oversized message. Blank lines are skipped.
    private async Task<(JsonDocument? Message, string? Error)> ReadMessageAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            int newline = Array.IndexOf(_receiveBuffer, (byte)'\n', _receiveStart, _receiveEnd - _receiveStart);
            if (newline >= 0)
            {
                _line.Write(_receiveBuffer.AsSpan(_receiveStart, newline - _receiveStart));
                _receiveStart = newline + 1;
                ReadOnlyMemory<byte> text = _line.WrittenMemory;
                if (IsBlank(text.Span))
                {
                    _line.ResetWrittenCount();
                    continue;
                }

                try
                {
                    JsonDocument document = JsonDocument.Parse(text);
                    _line.ResetWrittenCount();
                    if (document.RootElement.ValueKind != JsonValueKind.Object)
                    {
                        document.Dispose();
                        return (null, "the monitor sent a message that is not a JSON object");
                    }

                    return (document, null);
                }
                catch (JsonException e)
                {
                    return (null, $"the monitor sent malformed JSON: {e.Message}");
                }
            }

            _line.Write(_receiveBuffer.AsSpan(_receiveStart, _receiveEnd - _receiveStart));
            _receiveStart = _receiveEnd = 0;
            if (_line.WrittenCount > MaxMessageBytes)
            {
                return (null, $"the monitor sent a message longer than {MaxMessageBytes} bytes");
            }

            int received = await _socket.ReceiveAsync(_receiveBuffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (received == 0)
            {
                return (null, "the monitor closed the connection");
            }

            _receiveEnd = received;
        }
    }

    private static bool IsBlank(ReadOnlySpan<byte> text) => text.Trim(" \t\r"u8).IsEmpty;

    private async Task SendAsync(QmpCommandMessage message, CancellationToken cancellationToken)
    {
        byte[] bytes = [.. JsonSerializer.SerializeToUtf8Bytes(message, QmpJsonContext.Default.QmpCommandMessage), (byte)'\n'];
        await _sendGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await _socket.SendAsync(bytes, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _sendGate.Release();
        }
    }

    private void Close(string reason)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }

        _socket.Dispose();
        _ = _events.Writer.TryComplete();
        foreach (KeyValuePair<long, TaskCompletionSource<QmpReply>> pending in _pending)
        {
            _ = pending.Value.TrySetResult(QmpReply.Failed(QmpReplyStatus.Disconnected, $"the QMP monitor went away ({reason})"));
        }
    }
}

// {"execute": NAME, "arguments": {...}, "id": N}; arguments and id are left out when null
// (qmp_capabilities is sent without either).
internal sealed record QmpCommandMessage(
    [property: JsonPropertyName("execute")] string Execute,
    [property: JsonPropertyName("arguments"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] JsonObject? Arguments,
    [property: JsonPropertyName("id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? Id);

[JsonSerializable(typeof(QmpCommandMessage))]
internal sealed partial class QmpJsonContext : JsonSerializerContext;
