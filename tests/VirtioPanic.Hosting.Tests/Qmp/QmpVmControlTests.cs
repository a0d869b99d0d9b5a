using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using VirtioPanic.Hosting.Qmp;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests.Qmp;

// QmpVmControl: every VM operation as its QMP command, failures as results, the run state from
// query-status and STOP/RESUME, reconnection; first against a scripted monitor, then against a
// real QEMU.
public sealed class QmpVmControlTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(10);

    private static VmActionContext Context(VmOperation operation) => new() { DeviceId = "wdt0", Operation = operation, PolicyAction = "test" };

    [Test]
    public async Task EveryOperation_SendsItsQmpCommand_AndReportsTheOutcome()
    {
        using var directory = new TempDirectory();
        using var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
        Task<FakeQmpMonitor.Connection> accepted = monitor.AcceptAsync();
        await using var control = new QmpVmControl(new QmpVmControlOptions { SocketPath = monitor.SocketPath, ReconnectDelay = TimeSpan.FromMilliseconds(50) });
        using FakeQmpMonitor.Connection connection = await accepted;
        Assert.That(await connection.AnswerAsync("""{"running": false, "status": "prelaunch"}"""), Is.EqualTo("query-status"));
        Assert.That(await control.WaitConnectedAsync(s_timeout), Is.True);

        var calls = new (Func<ValueTask<VmControlResult>> Call, string Command)[]
        {
            (() => control.PauseAsync(Context(VmOperation.Pause), CancellationToken.None), "stop"),
            (() => control.ResumeAsync(Context(VmOperation.Resume), CancellationToken.None), "cont"),
            (() => control.ResetAsync(Context(VmOperation.Reset), CancellationToken.None), "system_reset"),
            (() => control.PowerOffAsync(Context(VmOperation.PowerOff), CancellationToken.None), "quit"),
            (() => control.RequestShutdownAsync(Context(VmOperation.RequestShutdown), CancellationToken.None), "system_powerdown"),
            (() => control.InjectNmiAsync(Context(VmOperation.InjectNmi), CancellationToken.None), "inject-nmi"),
            (() => control.DumpGuestMemoryAsync(Context(VmOperation.DumpGuestMemory), directory.File("core.elf"), CancellationToken.None), "dump-guest-memory"),
        };
        var seen = new List<string>();
        var results = new List<VmControlResult>();
        string? dumpProtocol = null;
        foreach ((Func<ValueTask<VmControlResult>> call, string _) in calls)
        {
            Task<VmControlResult> pending = call().AsTask();
            using JsonDocument command = await connection.ReadCommandAsync();
            seen.Add(command.RootElement.GetProperty("execute").GetString()!);
            if (command.RootElement.TryGetProperty("arguments", out JsonElement arguments) && arguments.TryGetProperty("protocol", out JsonElement protocol))
            {
                dumpProtocol = protocol.GetString();
            }

            await connection.SendAsync($$"""{"return": {}, "id": {{command.RootElement.GetProperty("id").GetRawText()}}}""");
            results.Add(await pending.WaitAsync(s_timeout));
        }

        // One refused by the VMM: a failure with QEMU's error class and description.
        Task<VmControlResult> refused = control.InjectNmiAsync(Context(VmOperation.InjectNmi), CancellationToken.None).AsTask();
        using (JsonDocument command = await connection.ReadCommandAsync())
        {
            await connection.SendAsync($$"""{"error": {"class": "GenericError", "desc": "no NMI here"}, "id": {{command.RootElement.GetProperty("id").GetRawText()}}}""");
        }

        VmControlResult refusal = await refused.WaitAsync(s_timeout);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(seen, Is.EqualTo(calls.Select(c => c.Command)));
            Assert.That(results.Select(r => r.Succeeded), Has.All.True);
            Assert.That(dumpProtocol, Is.EqualTo("file:" + directory.File("core.elf")));
            Assert.That(refusal.Succeeded, Is.False);
            Assert.That(refusal.Error, Is.EqualTo("QMP inject-nmi: GenericError: no NMI here"));
            Assert.That(control.VmRunning, Is.False, "query-status said prelaunch");
        }
    }

    [Test]
    public async Task NotConnected_OperationsFailAtOnce()
    {
        using var directory = new TempDirectory();
        await using var control = new QmpVmControl(new QmpVmControlOptions { SocketPath = directory.File("nobody.sock"), ReconnectDelay = TimeSpan.FromMilliseconds(50) });

        VmControlResult result = await control.ResetAsync(Context(VmOperation.Reset), CancellationToken.None).AsTask().WaitAsync(s_timeout);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Succeeded, Is.False);
            Assert.That(result.Error, Does.Contain("not connected"));
            Assert.That(control.IsConnected, Is.False);
        }
    }

    [Test]
    public async Task RunState_FromQueryStatusAndStopResumeEvents_AndAfterReconnection()
    {
        using var directory = new TempDirectory();
        using var monitor = new FakeQmpMonitor(directory.File("qmp.sock"));
        Task<FakeQmpMonitor.Connection> accepted = monitor.AcceptAsync();
        await using var control = new QmpVmControl(new QmpVmControlOptions { SocketPath = monitor.SocketPath, ReconnectDelay = TimeSpan.FromMilliseconds(50) });
        var states = new BlockingCollection<bool>();
        control.RunStateChanged += states.Add;

        using (FakeQmpMonitor.Connection first = await accepted)
        {
            await first.AnswerAsync("""{"running": true, "status": "running"}""");
            Assert.That(states.TryTake(out bool initial, s_timeout) && initial, Is.True, "running, from query-status");
            await first.SendAsync("""{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}}""");
            Assert.That(states.TryTake(out bool stopped, s_timeout) && !stopped, Is.True, "stopped, from STOP");
            await first.SendAsync("""{"event": "RESUME", "timestamp": {"seconds": 2, "microseconds": 0}}""");
            Assert.That(states.TryTake(out bool resumed, s_timeout) && resumed, Is.True, "running, from RESUME");
            accepted = monitor.AcceptAsync();
        }

        // The monitor went away (a QEMU restarted paused): the client reconnects and re-reads the state.
        using FakeQmpMonitor.Connection second = await accepted;
        await second.AnswerAsync("""{"running": false, "status": "paused"}""");
        bool afterReconnect = states.TryTake(out bool paused, s_timeout) && !paused;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(afterReconnect, Is.True, "stopped, from query-status on the new connection");
            Assert.That(control.VmRunning, Is.False);
        }
    }

    // A real QEMU (Debian's qemu-system-x86, installed by .ci/prerequisites): a pc machine with
    // no disk, started paused, driven through every operation.
    [Test]
    public async Task RealQemu_EveryOperation_AndTheRunState()
    {
        string qemu = FindQemu();
        using var directory = new TempDirectory();
        string socket = directory.File("qmp.sock");
        string core = directory.File("guest.core");
        var start = new ProcessStartInfo(qemu)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in new[] { "-machine", "pc", "-m", "32", "-nodefaults", "-display", "none", "-S", "-qmp", $"unix:{socket},server=on,wait=off" })
        {
            start.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(start)!;
        try
        {
            await using var control = new QmpVmControl(new QmpVmControlOptions { SocketPath = socket, ReconnectDelay = TimeSpan.FromMilliseconds(100), CommandTimeout = TimeSpan.FromSeconds(20) });
            var states = new BlockingCollection<bool>();
            control.RunStateChanged += states.Add;
            Assert.That(await control.WaitConnectedAsync(TimeSpan.FromSeconds(30)), Is.True, "QMP connected");
            bool? initiallyRunning = control.VmRunning;
            while (states.TryTake(out _))
            {
                // the report of query-status (if it came after the subscription): not what is tested below
            }

            VmControlResult resume = await control.ResumeAsync(Context(VmOperation.Resume), CancellationToken.None);
            bool resumed = states.TryTake(out bool r1, s_timeout) && r1;
            VmControlResult pause = await control.PauseAsync(Context(VmOperation.Pause), CancellationToken.None);
            bool paused = states.TryTake(out bool r2, s_timeout) && !r2;
            VmControlResult nmi = await control.InjectNmiAsync(Context(VmOperation.InjectNmi), CancellationToken.None);
            VmControlResult reset = await control.ResetAsync(Context(VmOperation.Reset), CancellationToken.None);
            VmControlResult dump = await control.DumpGuestMemoryAsync(Context(VmOperation.DumpGuestMemory), core, CancellationToken.None);
            byte[] header = File.Exists(core) ? File.ReadAllBytes(core)[..20] : [];
            VmControlResult powerdown = await control.RequestShutdownAsync(Context(VmOperation.RequestShutdown), CancellationToken.None);
            VmControlResult quit = await control.PowerOffAsync(Context(VmOperation.PowerOff), CancellationToken.None);
            bool exited = process.WaitForExit(TimeSpan.FromSeconds(20));
            VmControlResult afterExit = await control.ResetAsync(Context(VmOperation.Reset), CancellationToken.None);

            using (Assert.EnterMultipleScope())
            {
                Assert.That(initiallyRunning, Is.False, "started with -S");
                Assert.That(resume.Succeeded, Is.True, resume.Error);
                Assert.That(resumed, Is.True, "RESUME reported");
                Assert.That(pause.Succeeded, Is.True, pause.Error);
                Assert.That(paused, Is.True, "STOP reported");
                Assert.That(nmi.Succeeded, Is.True, nmi.Error);
                Assert.That(reset.Succeeded, Is.True, reset.Error);
                Assert.That(dump.Succeeded, Is.True, dump.Error);
                Assert.That(header.Length, Is.EqualTo(20), "a core file was written");
                Assert.That(header[..4], Is.EqualTo(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }), "ELF magic");
                Assert.That(BitConverter.ToUInt16(header, 16), Is.EqualTo(4), "e_type ET_CORE");
                // A guest in real mode (no disk, firmware only) is dumped as ELF32 i386; in long mode as ELF64 x86-64.
                Assert.That(BitConverter.ToUInt16(header, 18), Is.AnyOf((ushort)3, (ushort)62), "e_machine EM_386 or EM_X86_64");
                Assert.That(powerdown.Succeeded, Is.True, powerdown.Error);
                Assert.That(quit.Succeeded, Is.True, quit.Error);
                Assert.That(exited, Is.True, "quit ends QEMU");
                Assert.That(afterExit.Succeeded, Is.False, "a command after the VMM is gone fails");
            }
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(TimeSpan.FromSeconds(10));
            }
        }
    }

    private static string FindQemu()
    {
        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
        {
            string candidate = Path.Combine(directory, "qemu-system-x86_64");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        Assert.Fail("qemu-system-x86_64 is missing: run .ci/prerequisites (Debian package qemu-system-x86)");
        return "";
    }
}
