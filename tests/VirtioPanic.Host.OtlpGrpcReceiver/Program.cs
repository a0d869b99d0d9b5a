using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

// usage: VirtioPanic.Host.OtlpGrpcReceiver <directory>
// Kestrel on 127.0.0.1 (an ephemeral port), HTTP/2 only (cleartext, prior knowledge, as a gRPC
// client without TLS speaks it). Prints "listening <url>" once bound; for every call writes the
// request body to <directory>/<n>.bin and prints "call <n> <protocol> <path> <content-type>", and
// answers it as a successful unary gRPC call: an empty response message (a 5-byte frame: not
// compressed, length 0) and the trailer grpc-status 0. Ends when its standard input closes (the
// parent died or is done) or when killed.
if (args.Length != 1 || !Directory.Exists(args[0]))
{
    Console.Error.WriteLine("usage: VirtioPanic.Host.OtlpGrpcReceiver <existing directory>");
    return 64;
}

string directory = args[0];
WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
WebApplication app = builder.Build();
var output = TextWriter.Synchronized(Console.Out);
int calls = 0;
app.Run(async context =>
{
    int n = Interlocked.Increment(ref calls);
    using var body = new MemoryStream();
    await context.Request.Body.CopyToAsync(body, context.RequestAborted);
    await File.WriteAllBytesAsync(Path.Combine(directory, n.ToString(CultureInfo.InvariantCulture) + ".bin"), body.ToArray(), context.RequestAborted);
    output.WriteLine($"call {n} {context.Request.Protocol} {context.Request.Path.Value} {context.Request.ContentType}");
    output.Flush();
    context.Response.ContentType = "application/grpc";
    await context.Response.Body.WriteAsync(new byte[5], context.RequestAborted);
    context.Response.AppendTrailer("grpc-status", "0");
});
await app.StartAsync();
string address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
output.WriteLine("listening " + address);
output.Flush();
await Task.Run(() => Console.In.ReadToEnd());
await app.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(5)).Token);
return 0;
