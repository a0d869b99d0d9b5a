using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text.Json;
using static VirtioPanic.Host.Tests.ServeBoundaryTests;

namespace VirtioPanic.Host.Tests;

// `serve --control PATH` and the client subcommands (status, set-policy, continue, events), each a
// real process of the host program.
[NonParallelizable]
public sealed class ServeControlTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(60);

    [Test]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void Status_SetPolicy_Continue_ThroughTheManagementSocket()
    {
        using var directory = new TempDirectory();
        string control = directory.File("control.sock");
        using HostProcess serve = StartServe(directory, control);

        (int statusCode, string statusOut, string statusErr) = HostProcess.Run(s_limit, null, "status", "--control", control);
        (int setCode, string setOut, _) = HostProcess.Run(s_limit, null, "set-policy", "-c", control, "-d", "ctl", "--on-panic", "log-only", "--panic-grace", "2");
        (int oneCode, string oneOut, _) = HostProcess.Run(s_limit, null, "status", "-c", control, "-d", "ctl");
        (int missingCode, _, string missingErr) = HostProcess.Run(s_limit, null, "continue", "-c", control, "-d", "nope");
        (int continueCode, string continueOut, _) = HostProcess.Run(s_limit, null, "continue", "-c", control, "-d", "ctl");
        (int deadCode, _, string deadErr) = HostProcess.Run(s_limit, null, "status", "-c", directory.File("nobody.sock"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(statusCode, Is.Zero, statusErr);
            Assert.That(JsonDocument.Parse(statusOut).RootElement.EnumerateArray().Select(d => d.GetProperty("device").GetString()), Is.EqualTo(new[] { "ctl" }));
            Assert.That(setCode, Is.Zero);
            Assert.That(JsonDocument.Parse(setOut).RootElement.GetProperty("on-panic").GetString(), Is.EqualTo("log-only"));
            Assert.That(oneCode, Is.Zero);
            JsonElement device = JsonDocument.Parse(oneOut).RootElement;
            Assert.That(device.GetProperty("policy").GetProperty("on-panic").GetString(), Is.EqualTo("log-only"));
            Assert.That(device.GetProperty("policy").GetProperty("panic-grace-period-ms").GetInt64(), Is.EqualTo(2000));
            Assert.That(missingCode, Is.EqualTo(1));
            Assert.That(missingErr, Does.Contain("error:").And.Contain("DeviceNotFound"));
            Assert.That(continueCode, Is.Zero);
            Assert.That(JsonDocument.Parse(continueOut).RootElement.GetProperty("outcome").GetString(), Is.Not.Empty);
            Assert.That(deadCode, Is.EqualTo(1));
            Assert.That(deadErr, Does.Contain("error: management socket"));
            Assert.That(File.GetUnixFileMode(control), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        }

        serve.Terminate();
        Assert.That(serve.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero);
        Assert.That(File.Exists(control), Is.False, "the socket file is removed at the end");
    }

    // `events` follows: a panic reported through the front end's SET_CONFIG reaches it.
    [Test]
    public void Events_FollowsTheHandledEvents()
    {
        using var directory = new TempDirectory();
        string control = directory.File("control.sock");
        using HostProcess serve = StartServe(directory, control);
        using HostProcess events = HostProcess.Start(null, "events", "--control", control);
        Assert.That(SpinWait.SpinUntil(() => events.Error.Contains("following the events", StringComparison.Ordinal), s_limit), Is.True, "the events client negotiated: " + events.Error);

        using (Socket front = Connect(directory.File("wdt.sock")))
        {
            Send(front, SetOwner, []);
            Span<byte> u64 = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(u64, ProtocolFeatureConfig);
            Send(front, SetProtocolFeatures, u64);
            byte[] config = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(config, PanicEventsOffset);
            BinaryPrimitives.WriteUInt32LittleEndian(config.AsSpan(4), 4);
            BinaryPrimitives.WriteUInt32LittleEndian(config.AsSpan(12), PanicEventPanicked);
            Send(front, SetConfig, config);
            Send(front, GetFeatures, []);
            Assert.That(Receive(front, 20), Is.True);
        }

        bool seen = SpinWait.SpinUntil(() => events.Output.Contains("\"GUEST_PANICKED\"", StringComparison.Ordinal), s_limit);
        Assert.That(seen, Is.True, events.Output + events.Error + "\n--- serve ---\n" + serve.Output);
        string line = events.Output.Split('\n').First(l => l.Contains("GUEST_PANICKED", StringComparison.Ordinal));
        Assert.That(JsonDocument.Parse(line).RootElement.GetProperty("virtio-wdt").GetProperty("device").GetString(), Is.EqualTo("ctl"));
        serve.Terminate();
        Assert.That(serve.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero);
        Assert.That(events.WaitForExit(TimeSpan.FromSeconds(30)), Is.EqualTo(1), "the client ends when the service closes the socket");
    }

    private static HostProcess StartServe(TempDirectory directory, string control)
    {
        string socket = directory.File("wdt.sock");
        HostProcess serve = HostProcess.Start(null, "serve", "--vhost-user", socket, "--control", control, "--journal", directory.File("serve.jsonl"), "--dump-dir", directory.File("dumps"), "--device-id", "ctl", "--on-panic", "preserve");
        WaitForSocket(serve, socket);
        Assert.That(SpinWait.SpinUntil(() => File.Exists(control), s_limit), Is.True, "the management socket exists");
        return serve;
    }
}
