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

    // Many VMs in one process (Serve:Vms): a device, a socket and a policy each; a panic through
    // one VM's socket is that VM's alone.
    [Test]
    public void ManyVms_OneProcess_EachItsOwnDeviceSocketAndPolicy()
    {
        using var directory = new TempDirectory();
        string control = directory.File("control.sock");
        var environment = new Dictionary<string, string>
        {
            ["VIRTIOPANIC_Control__SocketPath"] = control,
            ["VIRTIOPANIC_VirtioPanic__Devices__vm2__OnPanic"] = "log-only",
        };
        for (int i = 1; i <= 3; i++)
        {
            environment[$"VIRTIOPANIC_Serve__Vms__{i - 1}__DeviceId"] = $"vm{i}";
            environment[$"VIRTIOPANIC_Serve__Vms__{i - 1}__VhostUser"] = directory.File($"vm{i}.sock");
        }

        using HostProcess serve = HostProcess.Start(environment, "serve", "--journal", directory.File("serve.jsonl"), "--dump-dir", directory.File("dumps"));
        for (int i = 1; i <= 3; i++)
        {
            WaitForSocket(serve, directory.File($"vm{i}.sock"));
        }

        Assert.That(SpinWait.SpinUntil(() => File.Exists(control), s_limit), Is.True);
        using (Socket front = Connect(directory.File("vm2.sock")))
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

        string? LastEvent(string device)
        {
            (int code, string output, string error) = HostProcess.Run(s_limit, null, "status", "-c", control, "-d", device);
            Assert.That(code, Is.Zero, error);
            JsonElement root = JsonDocument.Parse(output).RootElement;
            return root.TryGetProperty("last-event", out JsonElement last) && last.ValueKind == JsonValueKind.Object ? last.GetProperty("event").GetString() : null;
        }

        Assert.That(SpinWait.SpinUntil(() => LastEvent("vm2") == "GUEST_PANICKED", s_limit), Is.True);
        (int allCode, string all, _) = HostProcess.Run(s_limit, null, "status", "-c", control);
        JsonElement[] devices = [.. JsonDocument.Parse(all).RootElement.EnumerateArray()];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(allCode, Is.Zero);
            Assert.That(devices.Select(d => d.GetProperty("device").GetString()), Is.EquivalentTo(new[] { "vm1", "vm2", "vm3" }));
            Assert.That(devices.Single(d => d.GetProperty("device").GetString() == "vm2").GetProperty("policy").GetProperty("on-panic").GetString(), Is.EqualTo("log-only"), "its own policy");
            Assert.That(devices.Single(d => d.GetProperty("device").GetString() == "vm1").GetProperty("policy").GetProperty("on-panic").GetString(), Is.Not.EqualTo("log-only"));
            Assert.That(LastEvent("vm1"), Is.Not.EqualTo("GUEST_PANICKED"));
            Assert.That(LastEvent("vm3"), Is.Not.EqualTo("GUEST_PANICKED"));
        }

        serve.Terminate();
        Assert.That(serve.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero);
    }

    // Issue 15: serve reaches the per-vCPU options: Device:VcpuCount for every VM, Serve:Vms:n:VcpuCount
    // for one; a VM with a vCPU count serves the 36-byte configuration (vcpu_count at 0x14), one
    // with 0 the 20-byte one (a read at 0x14 is refused with the empty GET_CONFIG reply).
    [Test]
    public void ManyVms_VcpuCountFromTheDeviceSectionOrPerVm_ReachesEachDevicesConfig()
    {
        using var directory = new TempDirectory();
        var environment = new Dictionary<string, string>
        {
            ["VIRTIOPANIC_Device__VcpuCount"] = "2",
            ["VIRTIOPANIC_Serve__Vms__0__DeviceId"] = "vm1",
            ["VIRTIOPANIC_Serve__Vms__0__VhostUser"] = directory.File("vm1.sock"),
            ["VIRTIOPANIC_Serve__Vms__0__VcpuCount"] = "3",
            ["VIRTIOPANIC_Serve__Vms__1__DeviceId"] = "vm2",
            ["VIRTIOPANIC_Serve__Vms__1__VhostUser"] = directory.File("vm2.sock"),
            ["VIRTIOPANIC_Serve__Vms__2__DeviceId"] = "vm3",
            ["VIRTIOPANIC_Serve__Vms__2__VhostUser"] = directory.File("vm3.sock"),
            ["VIRTIOPANIC_Serve__Vms__2__VcpuCount"] = "0",
        };

        using HostProcess serve = HostProcess.Start(environment, "serve", "--journal", directory.File("serve.jsonl"), "--dump-dir", directory.File("dumps"));
        byte[]? VcpuCountField(string vm)
        {
            WaitForSocket(serve, directory.File(vm + ".sock"));
            using Socket front = Connect(directory.File(vm + ".sock"));
            Send(front, SetOwner, []);
            Span<byte> u64 = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(u64, ProtocolFeatureConfig);
            Send(front, SetProtocolFeatures, u64);
            byte[] get = new byte[12 + 4];
            BinaryPrimitives.WriteUInt32LittleEndian(get, 0x14);
            BinaryPrimitives.WriteUInt32LittleEndian(get.AsSpan(4), 4);
            Send(front, GetConfig, get);
            byte[] header = new byte[12];
            Assert.That(ReceiveInto(front, header), Is.True, "GET_CONFIG answered");
            byte[] payload = new byte[BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8))];
            Assert.That(ReceiveInto(front, payload), Is.True);
            return payload.Length == 0 ? null : payload[12..];
        }

        byte[]? vm1 = VcpuCountField("vm1");
        byte[]? vm2 = VcpuCountField("vm2");
        byte[]? vm3 = VcpuCountField("vm3");
        serve.Terminate();
        int code = serve.WaitForExit(TimeSpan.FromSeconds(30));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(vm1, Is.EqualTo(new byte[] { 3, 0, 0, 0 }), "Serve:Vms:0:VcpuCount");
            Assert.That(vm2, Is.EqualTo(new byte[] { 2, 0, 0, 0 }), "Device:VcpuCount");
            Assert.That(vm3, Is.Null, "VcpuCount 0: a 20-byte configuration");
            Assert.That(code, Is.Zero, serve.Error);
        }
    }

    [Test]
    public void ManyVms_BadVcpuCount_OneClearErrorLine_ExitCode2()
    {
        using var directory = new TempDirectory();
        var environment = new Dictionary<string, string>
        {
            ["VIRTIOPANIC_Serve__Vms__0__DeviceId"] = "vm1",
            ["VIRTIOPANIC_Serve__Vms__0__VhostUser"] = directory.File("a.sock"),
            ["VIRTIOPANIC_Serve__Vms__0__VcpuCount"] = "1025",
        };

        (int code, string output, string error) = HostProcess.Run(s_limit, environment, "serve", "--journal", directory.File("serve.jsonl"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(2));
            Assert.That(error, Does.Contain("error: Serve:Vms:0:VcpuCount = '1025': allowed: 0 (no per-vCPU stall detection) to 1024"));
            Assert.That(output + error, Does.Not.Contain("   at "), "no stack trace");
        }
    }

    private static bool ReceiveInto(Socket socket, byte[] buffer)
    {
        int received = 0;
        while (received < buffer.Length)
        {
            int n = socket.Receive(buffer, received, buffer.Length - received, SocketFlags.None);
            if (n == 0)
            {
                return false;
            }

            received += n;
        }

        return true;
    }

    [Test]
    public void ManyVms_ADeviceIdTwice_OneClearErrorLine_ExitCode2()
    {
        using var directory = new TempDirectory();
        var environment = new Dictionary<string, string>
        {
            ["VIRTIOPANIC_Serve__Vms__0__DeviceId"] = "vm1",
            ["VIRTIOPANIC_Serve__Vms__0__VhostUser"] = directory.File("a.sock"),
            ["VIRTIOPANIC_Serve__Vms__1__DeviceId"] = "vm1",
            ["VIRTIOPANIC_Serve__Vms__1__VhostUser"] = directory.File("b.sock"),
        };

        (int code, string output, string error) = HostProcess.Run(s_limit, environment, "serve", "--journal", directory.File("serve.jsonl"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(2));
            Assert.That(error, Does.Contain("error: Serve:Vms:1:DeviceId: 'vm1' is used twice"));
            Assert.That(output + error, Does.Not.Contain("   at "), "no stack trace");
        }
    }
}
