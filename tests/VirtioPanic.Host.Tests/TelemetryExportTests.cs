using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Text;

namespace VirtioPanic.Host.Tests;

// The host program exports over OTLP when an endpoint is configured: the demo runs as a child
// process against a loopback OTLP/HTTP receiver (127.0.0.1, an ephemeral port) that accepts the
// POSTs and records their path, content type and size, or against a loopback OTLP/gRPC receiver
// (HTTP/2, a child process of its own); every wait is bounded, every child killed by its PID.
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

    // Protocol grpc: the exporter calls the OTLP collector services' Export methods
    // (opentelemetry-proto, opentelemetry/proto/collector/{logs,metrics,trace}/v1/*_service.proto)
    // as gRPC over cleartext HTTP/2, on the endpoint as given (no signal path appended).
    [Test]
    public async Task Demo_WithTheGrpcProtocol_CallsEachCollectorServiceOverHttp2()
    {
        using var directory = new TempDirectory();
        string calls = directory.File("calls");
        Directory.CreateDirectory(calls);
        using GrpcReceiver receiver = await GrpcReceiver.StartAsync(calls);

        (int code, _, string error) = HostProcess.Run(s_limit, new Dictionary<string, string>
        {
            ["VIRTIOPANIC_Telemetry__Otlp__Endpoint"] = receiver.Endpoint,
            ["VIRTIOPANIC_Telemetry__Otlp__Protocol"] = "grpc",
        }, "--journal", directory.File("journal.jsonl"), "--dump-dir", directory.File("dumps"), "--no-countdown");

        GrpcReceiver.Call[] received = receiver.Stop();
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, error);
            Assert.That((string[])[.. received.Select(c => c.Path).Distinct().Order(StringComparer.Ordinal)], Is.EqualTo(new[]
            {
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            }), receiver.Log);
            Assert.That(received.All(c => c.Protocol == "HTTP/2" && c.ContentType == "application/grpc" && c.Body.Length > 5), Is.True, "gRPC calls over HTTP/2, each with a message");
            Assert.That(received.Any(c => c.Path.Contains("LogsService", StringComparison.Ordinal) && c.Contains("GUEST_PANICKED")), Is.True, "the panic's event record was exported");
            Assert.That(received.Any(c => c.Path.Contains("MetricsService", StringComparison.Ordinal) && c.Contains("virtiopanic.events")), Is.True, "the service's meter was exported");
            Assert.That(received.Any(c => c.Path.Contains("TraceService", StringComparison.Ordinal) && c.Contains("virtiopanic.action")), Is.True, "the restart's action span was exported");
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

    // The OTLP/gRPC receiver (tests/VirtioPanic.Host.OtlpGrpcReceiver) as a child process: Kestrel on
    // an ephemeral loopback port, HTTP/2 only; it prints each call and writes its body to a file.
    private sealed class GrpcReceiver : IDisposable
    {
        private readonly Process _process;
        private readonly string _directory;
        private readonly StringBuilder _log = new();
        private Task _reader = Task.CompletedTask;

        private GrpcReceiver(Process process, string directory, string endpoint)
        {
            _process = process;
            _directory = directory;
            Endpoint = endpoint;
        }

        public string Endpoint { get; }

        public string Log
        {
            get
            {
                lock (_log)
                {
                    return _log.ToString();
                }
            }
        }

        public static async Task<GrpcReceiver> StartAsync(string directory)
        {
            string dll = typeof(GrpcReceiver).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "OtlpGrpcReceiver").Value!;
            var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            start.ArgumentList.Add(dll);
            start.ArgumentList.Add(directory);
            Process process = Process.Start(start)!;
            try
            {
                string? first = await process.StandardOutput.ReadLineAsync().WaitAsync(s_limit);
                Assert.That(first, Does.StartWith("listening http://127.0.0.1:"));
                var receiver = new GrpcReceiver(process, directory, first!["listening ".Length..]);
                receiver._reader = Task.Run(async () =>
                {
                    while (await process.StandardOutput.ReadLineAsync() is string line)
                    {
                        lock (receiver._log)
                        {
                            receiver._log.AppendLine(line);
                        }
                    }
                });
                return receiver;
            }
            catch
            {
                process.Kill();
                process.WaitForExit(TimeSpan.FromSeconds(10));
                process.Dispose();
                throw;
            }
        }

        // Ends the receiver (its standard input closes; killed if it does not end within 10 s) and returns every call it recorded.
        public Call[] Stop()
        {
            _process.StandardInput.Close();
            if (!_process.WaitForExit(TimeSpan.FromSeconds(10)))
            {
                _process.Kill();
                _process.WaitForExit(TimeSpan.FromSeconds(10));
            }

            _ = _reader.Wait(TimeSpan.FromSeconds(10));
            var calls = new List<Call>();
            foreach (string line in Log.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                string[] parts = line.Split(' ');
                if (parts.Length == 5 && parts[0] == "call")
                {
                    calls.Add(new Call(parts[2], parts[3], parts[4], File.ReadAllBytes(Path.Combine(_directory, parts[1] + ".bin"))));
                }
            }

            return [.. calls];
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(TimeSpan.FromSeconds(10));
            }

            _process.Dispose();
        }

        public sealed record Call(string Protocol, string Path, string ContentType, byte[] Body)
        {
            public bool Contains(string text) => Body.AsSpan().IndexOf(Encoding.UTF8.GetBytes(text)) >= 0;
        }
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
