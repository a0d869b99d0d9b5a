using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace VirtioPanic.Host.Tests;

// The host program exports over OTLP when an endpoint is configured: the demo runs as a child
// process against a loopback OTLP/HTTP receiver (127.0.0.1, an ephemeral port) that accepts the
// POSTs and records their path, content type and size; every wait is bounded.
public sealed class TelemetryExportTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(90);

    [Test]
    public async Task Demo_WithAnOtlpEndpoint_PostsMetricsLogsAndTracesToTheReceiver()
    {
        using var directory = new TempDirectory();
        await using var receiver = OtlpReceiver.Start();

        (int code, string output, string error) = HostProcess.Run(s_limit, new Dictionary<string, string>
        {
            ["VIRTIOPANIC_Telemetry__Otlp__Endpoint"] = receiver.Endpoint,
            ["VIRTIOPANIC_Telemetry__Otlp__ServiceName"] = "otlp-test",
        }, "--journal", directory.File("journal.jsonl"), "--dump-dir", directory.File("dumps"), "--no-countdown");

        OtlpReceiver.Request[] requests = [.. receiver.Requests];
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, error);
            Assert.That(output, Does.Contain("Demo finished."));
            foreach (string path in new[] { "/v1/metrics", "/v1/logs", "/v1/traces" })
            {
                OtlpReceiver.Request[] posts = [.. requests.Where(r => r.Path == path)];
                Assert.That(posts, Is.Not.Empty, $"a POST to {path}; received: {string.Join(", ", requests.Select(r => r.Path))}");
                Assert.That(posts.All(r => r.Method == "POST" && r.ContentType == "application/x-protobuf" && r.Length > 0), Is.True, $"{path}: protobuf bodies");
            }

            // The resource's service.name travels in every request (protobuf strings are plain UTF-8).
            Assert.That(requests.Any(r => r.Path == "/v1/logs" && r.Contains("otlp-test") && r.Contains("GUEST_PANICKED")), Is.True, "the panic's event record was exported");
            Assert.That(requests.Any(r => r.Path == "/v1/metrics" && r.Contains("virtiopanic.events")), Is.True, "the service's meter was exported");
            Assert.That(requests.Any(r => r.Path == "/v1/traces" && r.Contains("virtiopanic.action") && r.Contains("reset")), Is.True, "the restart's action span was exported");
        });
    }

    [Test]
    public async Task Demo_WithTheStandardOtlpVariables_PostsToTheReceiver()
    {
        using var directory = new TempDirectory();
        await using var receiver = OtlpReceiver.Start();

        (int code, _, string error) = HostProcess.Run(s_limit, new Dictionary<string, string>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
        }, "--journal", directory.File("journal.jsonl"), "--dump-dir", directory.File("dumps"), "--no-countdown");

        OtlpReceiver.Request[] requests = [.. receiver.Requests];
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, error);
            Assert.That((string[])[.. requests.Select(r => r.Path).Distinct().Order()], Is.EqualTo(new[] { "/v1/logs", "/v1/metrics", "/v1/traces" }), "the exporter appended each signal's path");
            Assert.That(requests.All(r => r.ContentType == "application/x-protobuf" && r.Length > 0), Is.True);
            Assert.That(requests.Any(r => r.Path == "/v1/logs" && r.Contains("virtiopanic") && r.Contains("GUEST_PANICKED")), Is.True, "default service name and the panic's record");
        });
    }

    [Test]
    public void Demo_WithABadOtlpEndpoint_FailsWithOneLineNamingTheKey()
    {
        (int code, string output, string error) = HostProcess.Run(s_limit, new Dictionary<string, string>
        {
            ["VIRTIOPANIC_Telemetry__Otlp__Endpoint"] = "collector:4318",
            ["VIRTIOPANIC_Telemetry__Otlp__Protocol"] = "carrier-pigeon",
        }, "--no-countdown");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(2), output + error);
            Assert.That(error, Does.Contain("error: Telemetry:Otlp:Endpoint = 'collector:4318'"));
            Assert.That(error, Does.Contain("error: Telemetry:Otlp:Protocol = 'carrier-pigeon': allowed values are http/protobuf, grpc."));
            Assert.That(error, Does.Not.Contain("   at "), "no stack trace");
        });
    }

    private sealed class OtlpReceiver : IAsyncDisposable
    {
        private readonly HttpListener _listener;
        private readonly Task _loop;

        private OtlpReceiver(HttpListener listener, string endpoint)
        {
            _listener = listener;
            Endpoint = endpoint;
            _loop = Task.Run(LoopAsync);
        }

        public string Endpoint { get; }

        public ConcurrentQueue<Request> Requests { get; } = new();

        public static OtlpReceiver Start()
        {
            // An ephemeral loopback port: bound once to learn a free number, then given to HttpListener.
            using var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            int port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            var listener = new HttpListener();
            listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            listener.Start();
            return new OtlpReceiver(listener, $"http://127.0.0.1:{port}");
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            await _loop.WaitAsync(TimeSpan.FromSeconds(10));
            _listener.Close();
        }

        private async Task LoopAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }

                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                Requests.Enqueue(new Request(context.Request.HttpMethod, context.Request.Url!.AbsolutePath, context.Request.ContentType, body.ToArray()));
                // An empty ExportServiceResponse: full success.
                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/x-protobuf";
                context.Response.Close();
            }
        }

        public sealed record Request(string Method, string Path, string? ContentType, byte[] Body)
        {
            public int Length => Body.Length;

            public bool Contains(string text) => Body.AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes(text)) >= 0;
        }
    }
}
