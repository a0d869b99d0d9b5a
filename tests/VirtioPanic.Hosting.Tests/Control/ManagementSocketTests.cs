using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using VirtioPanic.Hosting.Control;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests.Control;

// The management socket against a raw client: QMP framing, the commands, events, hostile input.
public sealed class ManagementSocketTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(10);

    private sealed class Client : IDisposable
    {
        private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        private readonly StreamReader _reader;
        private int _id;

        internal Client(string path)
        {
            _socket.Connect(new UnixDomainSocketEndPoint(path));
            _reader = new StreamReader(new NetworkStream(_socket, ownsSocket: false), Encoding.UTF8);
        }

        internal async Task<JsonElement> ReadAsync()
        {
            using var timeout = new CancellationTokenSource(s_timeout);
            string? line = await _reader.ReadLineAsync(timeout.Token);
            Assert.That(line, Is.Not.Null, "the server closed the connection");
            return JsonDocument.Parse(line!).RootElement.Clone();
        }

        // Null when the server closed the connection.
        internal async Task<string?> ReadLineOrCloseAsync()
        {
            using var timeout = new CancellationTokenSource(s_timeout);
            try
            {
                return await _reader.ReadLineAsync(timeout.Token);
            }
            catch (IOException)
            {
                return null;
            }
        }

        internal void SendRaw(string text) => _socket.Send(Encoding.UTF8.GetBytes(text));

        // Sends a command and reads until its reply (events before it are returned apart).
        internal async Task<(JsonElement Reply, List<JsonElement> Events)> ExecuteAsync(string command, string? arguments = null)
        {
            int id = ++_id;
            SendRaw($$"""{"execute": "{{command}}"{{(arguments is null ? "" : ", \"arguments\": " + arguments)}}, "id": {{id}}}""" + "\n");
            var events = new List<JsonElement>();
            while (true)
            {
                JsonElement message = await ReadAsync();
                if (message.TryGetProperty("event", out _))
                {
                    events.Add(message);
                    continue;
                }

                Assert.That(message.GetProperty("id").GetInt32(), Is.EqualTo(id));
                return (message, events);
            }
        }

        internal async Task<JsonElement> NegotiateAsync()
        {
            JsonElement greeting = await ReadAsync();
            (JsonElement reply, _) = await ExecuteAsync("qmp_capabilities");
            Assert.That(reply.TryGetProperty("return", out _), Is.True, reply.ToString());
            return greeting;
        }

        public void Dispose()
        {
            _reader.Dispose();
            _socket.Dispose();
        }
    }

    private static string ErrorClass(JsonElement reply) => reply.GetProperty("error").GetProperty("class").GetString()!;

    [Test]
    public async Task Greeting_Negotiation_QueryCommands_QueryDevices_OwnerOnlySocket()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync();
        string path = rig.Directory.File("control.sock");
        await using var socket = new ManagementSocket(rig.Manager, path);
        using var client = new Client(path);

        JsonElement greeting = await client.ReadAsync();
        (JsonElement early, _) = await client.ExecuteAsync("query-devices");
        (JsonElement capabilities, _) = await client.ExecuteAsync("qmp_capabilities");
        (JsonElement again, _) = await client.ExecuteAsync("qmp_capabilities");
        (JsonElement commands, _) = await client.ExecuteAsync("query-commands");
        (JsonElement devices, _) = await client.ExecuteAsync("query-devices");
        (JsonElement unknown, _) = await client.ExecuteAsync("no-such-command");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(greeting.GetProperty("QMP").GetProperty("capabilities").GetArrayLength(), Is.Zero);
            Assert.That(ErrorClass(early), Is.EqualTo("CommandNotFound"), "capabilities negotiation first");
            Assert.That(capabilities.GetProperty("return").ValueKind, Is.EqualTo(JsonValueKind.Object));
            Assert.That(ErrorClass(again), Is.EqualTo("CommandNotFound"));
            Assert.That(commands.GetProperty("return").EnumerateArray().Select(c => c.GetProperty("name").GetString()), Is.SupersetOf(new[] { "query-devices", "query-device", "set-policy", "continue" }));
            Assert.That(devices.GetProperty("return").EnumerateArray().Select(d => d.GetProperty("device").GetString()), Is.EqualTo(new[] { "wdt0" }));
            Assert.That(ErrorClass(unknown), Is.EqualTo("CommandNotFound"));
            Assert.That(File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        }
    }

    [Test]
    public async Task QueryDevice_SetPolicy_AndTheirErrors()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Destroy });
        string path = rig.Directory.File("control.sock");
        await using var socket = new ManagementSocket(rig.Manager, path);
        using var client = new Client(path);
        await client.NegotiateAsync();

        (JsonElement device, _) = await client.ExecuteAsync("query-device", """{"device": "wdt0"}""");
        (JsonElement missing, _) = await client.ExecuteAsync("query-device", """{"device": "nope"}""");
        (JsonElement noArgument, _) = await client.ExecuteAsync("query-device");
        (JsonElement set, _) = await client.ExecuteAsync("set-policy", """{"device": "wdt0", "policy": {"on-panic": "preserve", "panic-grace-period-ms": 1500}}""");
        (JsonElement badValue, _) = await client.ExecuteAsync("set-policy", """{"device": "wdt0", "policy": {"on-watchdog": "explode"}}""");
        (JsonElement badMember, _) = await client.ExecuteAsync("set-policy", """{"device": "wdt0", "policy": {"on-panik": "preserve"}}""");
        (JsonElement policy, _) = await client.ExecuteAsync("query-policy", """{"device": "wdt0"}""");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(device.GetProperty("return").GetProperty("device").GetString(), Is.EqualTo("wdt0"));
            Assert.That(device.GetProperty("return").TryGetProperty("watchdog", out _), Is.True);
            Assert.That(ErrorClass(missing), Is.EqualTo("DeviceNotFound"));
            Assert.That(ErrorClass(noArgument), Is.EqualTo("GenericError"));
            Assert.That(set.GetProperty("return").GetProperty("on-panic").GetString(), Is.EqualTo("preserve"));
            Assert.That(ErrorClass(badValue), Is.EqualTo("GenericError"));
            Assert.That(badValue.GetProperty("error").GetProperty("desc").GetString(), Does.Contain("on-watchdog").And.Contain("reset"), "names the member and what is allowed");
            Assert.That(badMember.GetProperty("error").GetProperty("desc").GetString(), Does.Contain("on-panik"));
            Assert.That(policy.GetProperty("return").GetProperty("on-panic").GetString(), Is.EqualTo("preserve"), "the refused changes changed nothing");
            Assert.That(policy.GetProperty("return").GetProperty("panic-grace-period-ms").GetInt64(), Is.EqualTo(1500));
            Assert.That(rig.Manager.GetPolicy("wdt0").OnPanic, Is.EqualTo(PanicAction.Preserve));
        }
    }

    [Test]
    public async Task SetPolicy_Sequence_IsCheckedLikeConfiguration_AndQueryDeviceShowsTheStep()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync();
        string path = rig.Directory.File("control.sock");
        await using var socket = new ManagementSocket(rig.Manager, path);
        using var client = new Client(path);
        await client.NegotiateAsync();

        (JsonElement set, _) = await client.ExecuteAsync("set-policy", """{"device": "wdt0", "policy": {"on-watchdog": "inject-nmi; 10s reset", "on-vcpu-stall": "none; 5s poweroff"}}""");
        (JsonElement badDelay, _) = await client.ExecuteAsync("set-policy", """{"device": "wdt0", "policy": {"on-watchdog": "inject-nmi; 10x reset"}}""");
        (JsonElement badOrder, _) = await client.ExecuteAsync("set-policy", """{"device": "wdt0", "policy": {"on-panic": "destroy; 10s preserve"}}""");
        rig.Guest.Boot();
        rig.Guest.Heartbeat();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
        rig.Time.Advance(TimeSpan.FromSeconds(5));
        await rig.NextAsync("WATCHDOG");
        (JsonElement device, _) = await client.ExecuteAsync("query-device", """{"device": "wdt0"}""");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(set.GetProperty("return").GetProperty("on-watchdog").GetString(), Is.EqualTo("inject-nmi; 10s reset"));
            Assert.That(set.GetProperty("return").GetProperty("on-vcpu-stall").GetString(), Is.EqualTo("none; 5s poweroff"));
            Assert.That(badDelay.GetProperty("error").GetProperty("desc").GetString(), Does.Contain("on-watchdog").And.Contain("'10x' is not a delay"));
            Assert.That(badOrder.GetProperty("error").GetProperty("desc").GetString(), Does.Contain("OnPanic: step 1 (destroy)"));
            Assert.That(rig.Manager.GetPolicy("wdt0").OnPanic, Is.EqualTo(PanicAction.Destroy), "the refused change changed nothing");
            JsonElement escalation = device.GetProperty("return").GetProperty("escalation");
            Assert.That((escalation.GetProperty("kind").GetString(), escalation.GetProperty("step").GetInt32(), escalation.GetProperty("of").GetInt32(), escalation.GetProperty("next-action").GetString()),
                Is.EqualTo(("watchdog", 1, 2, "reset")));
            Assert.That(escalation.GetProperty("next-due").GetDateTimeOffset(), Is.EqualTo(rig.Time.GetUtcNow() + TimeSpan.FromSeconds(10)));
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.InjectNmi }));
        }
    }

    // A panic with preserve: the event reaches the client, and `continue` resumes the VM.
    [Test]
    public async Task PanicEvent_ReachesTheClient_ContinueResumesThePreservedVm()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Preserve });
        string path = rig.Directory.File("control.sock");
        await using var socket = new ManagementSocket(rig.Manager, path);
        using var client = new Client(path);
        await client.NegotiateAsync();
        rig.Guest.Boot();

        rig.Guest.Panic();
        JsonElement panic;
        do
        {
            panic = await client.ReadAsync();
        }
        while (panic.GetProperty("event").GetString() != "GUEST_PANICKED");

        (JsonElement continued, List<JsonElement> events) = await client.ExecuteAsync("continue", """{"device": "wdt0"}""");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(panic.GetProperty("data").GetProperty("action").GetString(), Is.EqualTo("pause"));
            Assert.That(panic.GetProperty("virtio-wdt").GetProperty("device").GetString(), Is.EqualTo("wdt0"));
            Assert.That(continued.GetProperty("return").GetProperty("outcome").GetString(), Is.EqualTo("ok"), continued.ToString());
            Assert.That(rig.Vm.Operations, Is.EqualTo(new[] { VmOperation.Pause, VmOperation.Resume }));
        }
    }

    [TestCase("not json at all\n", TestName = "NotJson_ClosesTheConnection")]
    [TestCase("[1, 2, 3]\n", TestName = "NotAnObject_ClosesTheConnection")]
    [TestCase(null, TestName = "OversizedLine_ClosesTheConnection")]
    public async Task HostileInput_ClosesTheConnection_TheSocketServesTheNextClient(string? line)
    {
        await using PolicyRig rig = await PolicyRig.StartAsync();
        string path = rig.Directory.File("control.sock");
        await using var socket = new ManagementSocket(rig.Manager, path);
        using (var bad = new Client(path))
        {
            _ = await bad.ReadAsync();
            bad.SendRaw(line ?? new string(' ', ManagementConnection.MaxLineBytes + 10));
            string? error = await bad.ReadLineOrCloseAsync();
            Assert.That(error, Does.Contain("\"error\""));
            Assert.That(await bad.ReadLineOrCloseAsync(), Is.Null, "closed");
        }

        using var good = new Client(path);
        await good.NegotiateAsync();
        (JsonElement devices, _) = await good.ExecuteAsync("query-devices");
        Assert.That(devices.GetProperty("return").GetArrayLength(), Is.EqualTo(1));
    }

    [Test]
    public async Task MoreThan16Clients_TheRestAreClosed()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync();
        string path = rig.Directory.File("control.sock");
        await using var socket = new ManagementSocket(rig.Manager, path);
        var clients = new List<Client>();
        try
        {
            for (int i = 0; i < ManagementSocket.MaxClients; i++)
            {
                var c = new Client(path);
                clients.Add(c);
                _ = await c.ReadAsync();
            }

            using var extra = new Client(path);
            Assert.That(await extra.ReadLineOrCloseAsync(), Is.Null, "refused");
            Assert.That(socket.ClientCount, Is.EqualTo(ManagementSocket.MaxClients));
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }
}
