using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;

namespace VirtioPanic.Host.Tests;

// `serve --vhost-user` against a hostile front end, end to end: the real host program, its
// policy service and its Serilog output, driven over the socket with raw vhost-user messages
// (vhost-user.rst: header = request u32, flags u32 (version 1, bit 3 NEED_REPLY), size u32).
[NonParallelizable]
public sealed class ServeBoundaryTests
{
    internal const uint GetFeatures = 1;
    internal const uint SetOwner = 3;
    internal const uint SetProtocolFeatures = 16;
    internal const uint GetConfig = 24;
    internal const uint SetConfig = 25;
    private const uint Version = 0x1;
    internal const ulong ProtocolFeatureConfig = 1UL << 9;
    internal const uint PanicEventsOffset = 0x08;   // spec/virtio-watchdog.md, configuration layout
    internal const uint PanicEventPanicked = 1;

    [Test]
    public void Serve_PanicEventsWrittenInALoopThroughSetConfig_LogStaysBounded_AndServeKeepsServing()
    {
        using var directory = new TempDirectory();
        string socketPath = directory.File("wdt.sock");
        using HostProcess serve = HostProcess.Start(null, "serve", "--vhost-user", socketPath, "--journal", directory.File("serve.jsonl"), "--dump-dir", directory.File("dumps"), "--device-id", "flood");
        WaitForSocket(serve, socketPath);

        long writes = 0;
        using (Socket front = Connect(socketPath))
        {
            Send(front, SetOwner, []);
            Span<byte> u64 = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(u64, ProtocolFeatureConfig);
            Send(front, SetProtocolFeatures, u64);

            byte[] config = new byte[12 + 4];
            BinaryPrimitives.WriteUInt32LittleEndian(config, PanicEventsOffset);
            BinaryPrimitives.WriteUInt32LittleEndian(config.AsSpan(4), 4);
            BinaryPrimitives.WriteUInt32LittleEndian(config.AsSpan(8), 0);
            BinaryPrimitives.WriteUInt32LittleEndian(config.AsSpan(12), PanicEventPanicked);
            var clock = Stopwatch.StartNew();
            while (clock.ElapsedMilliseconds < 3000)
            {
                Send(front, SetConfig, config);
                writes++;
            }

            // A round trip: every write before it has been handled when the answer comes.
            Send(front, GetFeatures, []);
            Assert.That(Receive(front, 20), Is.True, "GET_FEATURES answered after the flood");
        }

        serve.Terminate();
        int code = serve.WaitForExit(TimeSpan.FromSeconds(30));
        string[] lines = serve.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(writes, Is.GreaterThan(500), "the loop really wrote panic_events many times");
            Assert.That(code, Is.Zero, serve.Error);
            Assert.That(lines, Has.Length.LessThanOrEqualTo(250), "log lines for " + writes + " panic reports:\n" + string.Join('\n', lines.Take(60)));
            Assert.That(serve.Output, Does.Contain("not logged").Or.Contain("suppressed"), "what was not logged is summarised");
        }
    }

    internal static void WaitForSocket(HostProcess serve, string socketPath)
    {
        DateTime until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!File.Exists(socketPath) && DateTime.UtcNow < until && !serve.Process.HasExited)
        {
            Thread.Sleep(50);
        }

        Assert.That(File.Exists(socketPath), Is.True, "no socket: " + serve.Output + serve.Error);
    }

    internal static Socket Connect(string socketPath)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10000, SendTimeout = 10000 };
        socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        return socket;
    }

    internal static void Send(Socket socket, uint request, ReadOnlySpan<byte> payload)
    {
        byte[] message = new byte[12 + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(message, request);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), Version);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), (uint)payload.Length);
        payload.CopyTo(message.AsSpan(12));
        int sent = 0;
        while (sent < message.Length)
        {
            sent += socket.Send(message, sent, message.Length - sent, SocketFlags.None);
        }
    }

    internal static bool Receive(Socket socket, int length)
    {
        byte[] buffer = new byte[length];
        int received = 0;
        try
        {
            while (received < length)
            {
                int n = socket.Receive(buffer, received, length - received, SocketFlags.None);
                if (n == 0)
                {
                    return false;
                }

                received += n;
            }
        }
        catch (SocketException)
        {
            return false;
        }

        return true;
    }
}
