using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;

namespace VirtioPanic.Hosting.Control;

// One management client, in QMP's framing (QEMU docs/interop/qmp-spec.rst): the server greets,
// the client must send qmp_capabilities first (capabilities negotiation mode), then commands
// ({"execute": NAME, "arguments": {...}, "id": ANY}), each answered with {"return": ..., "id"} or
// {"error": {"class": C, "desc": D}, "id"}; events ({"event", "data"?, "timestamp"}) are sent
// whenever they happen once negotiation is over.
//
// Threads: a reader task reads and answers commands in order; a writer task owns the socket's send
// side and takes lines from two channels: replies (the reader waits for room, so a reply is never
// lost) first, then events, which are dropped oldest-first when the client does not read; the next
// event sent after a loss says how many were lost. Ending either side ends both.
internal sealed class ManagementConnection : IAsyncDisposable
{
    internal const int MaxLineBytes = 64 * 1024;
    private const int Backlog = 256;

    private readonly ManagementSocket _owner;
    private readonly Socket _socket;
    private readonly ManagementCommands _commands;
    private readonly CancellationTokenSource _stop;
    private readonly Channel<string> _replies = Channel.CreateBounded<string>(new BoundedChannelOptions(4) { SingleReader = true, SingleWriter = true });
    private readonly Channel<string> _events = Channel.CreateBounded<string>(new BoundedChannelOptions(Backlog)
    {
        FullMode = BoundedChannelFullMode.DropOldest,
        SingleReader = true,
    });

    // 1 once the client left capabilities negotiation; written by the reader, read by the event
    // producer (any thread): Volatile on both sides, an event raced with the switch may be missed.
    private int _commandMode;
    private long _dropped;
    private Task _running = Task.CompletedTask;

    internal ManagementConnection(ManagementSocket owner, Socket socket, ManagementCommands commands, CancellationToken stop)
    {
        _owner = owner;
        _socket = socket;
        _commands = commands;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(stop);
    }

    internal void Start() => _running = Task.Run(RunAsync);

    internal void QueueEvent(string json)
    {
        if (Volatile.Read(ref _commandMode) == 0)
        {
            return;
        }

        // A full channel drops its oldest line; count what an event push displaced.
        if (_events.Reader.Count >= Backlog)
        {
            _ = Interlocked.Increment(ref _dropped);
        }

        _ = _events.Writer.TryWrite(json);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _socket.Dispose();
        await _running.ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task RunAsync()
    {
        Task writer = Task.Run(WriteLoopAsync);
        try
        {
            await ReadLoopAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            // The last reply (an error that ends the connection) still goes out, within a bound.
            _ = _replies.Writer.TryComplete();
            try
            {
                await writer.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException or IOException or SocketException or ObjectDisposedException)
            {
            }

            await _stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await writer.ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
            {
            }

            _socket.Dispose();
            _owner.Remove(this);
        }
    }

    private async Task ReadLoopAsync()
    {
        await SendAsync(ManagementCommands.Greeting()).ConfigureAwait(false);
        byte[] buffer = new byte[16 * 1024];
        var line = new MemoryStream();
        while (true)
        {
            int read = await _socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token).ConfigureAwait(false);
            if (read == 0)
            {
                return;
            }

            int start = 0;
            for (int i = 0; i < read; i++)
            {
                if (buffer[i] != (byte)'\n')
                {
                    continue;
                }

                line.Write(buffer, start, i - start);
                start = i + 1;
                if (!await HandleLineAsync(line.ToArray()).ConfigureAwait(false))
                {
                    return;
                }

                line.SetLength(0);
            }

            line.Write(buffer, start, read - start);
            if (line.Length > MaxLineBytes)
            {
                await SendAsync(ManagementCommands.Error(null, "GenericError", $"message longer than {MaxLineBytes} bytes; closing")).ConfigureAwait(false);
                return;
            }
        }
    }

    // False ends the connection.
    private async Task<bool> HandleLineAsync(byte[] bytes)
    {
        if (bytes.Length > MaxLineBytes)
        {
            await SendAsync(ManagementCommands.Error(null, "GenericError", $"message longer than {MaxLineBytes} bytes; closing")).ConfigureAwait(false);
            return false;
        }

        if (bytes.AsSpan().Trim((byte)'\r').Trim((byte)' ').IsEmpty)
        {
            return true;
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException)
        {
            await SendAsync(ManagementCommands.Error(null, "GenericError", "not JSON; closing")).ConfigureAwait(false);
            return false;
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                await SendAsync(ManagementCommands.Error(null, "GenericError", "a message must be a JSON object; closing")).ConfigureAwait(false);
                return false;
            }

            bool commandMode = Volatile.Read(ref _commandMode) != 0;
            (string reply, bool enterCommandMode) = await _commands.ExecuteAsync(document.RootElement, commandMode, _stop.Token).ConfigureAwait(false);
            if (enterCommandMode)
            {
                Volatile.Write(ref _commandMode, 1);
            }

            await SendAsync(reply).ConfigureAwait(false);
            return true;
        }
    }

    private ValueTask SendAsync(string json) => _replies.Writer.WriteAsync(json, _stop.Token);

    // Replies first, then events; ends when the reader completed the reply channel.
    private async Task WriteLoopAsync()
    {
        while (true)
        {
            if (_replies.Reader.TryRead(out string? reply))
            {
                await WriteLineAsync(reply).ConfigureAwait(false);
                continue;
            }

            if (_events.Reader.TryRead(out string? evt))
            {
                long dropped = Interlocked.Exchange(ref _dropped, 0);
                if (dropped > 0)
                {
                    await WriteLineAsync(ManagementCommands.EventsLost(dropped)).ConfigureAwait(false);
                }

                await WriteLineAsync(evt).ConfigureAwait(false);
                continue;
            }

            Task<bool> replies = _replies.Reader.WaitToReadAsync(_stop.Token).AsTask();
            Task<bool> events = _events.Reader.WaitToReadAsync(_stop.Token).AsTask();
            _ = await Task.WhenAny(replies, events).ConfigureAwait(false);
            if (replies.IsCompleted && !await replies.ConfigureAwait(false))
            {
                return;   // the reader is done
            }
        }
    }

    private async Task WriteLineAsync(string json)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(json + "\r\n");
        int sent = 0;
        while (sent < bytes.Length)
        {
            sent += await _socket.SendAsync(bytes.AsMemory(sent), SocketFlags.None, _stop.Token).ConfigureAwait(false);
        }
    }
}
