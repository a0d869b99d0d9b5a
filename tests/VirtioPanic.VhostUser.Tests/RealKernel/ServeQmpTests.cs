using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using VirtioPanic.Host.Tests;
using static VirtioPanic.VhostUser.Tests.RealKernel.Id35Guest;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

// The real `serve` (the host program as a child process) with `--qmp` on QEMU 11's monitor, the
// reference driver in Debian's kernel on QEMU's generic vhost-user device (ID 35): the policy
// service acts on the VM, and the VM's run state is the watchdog's.
internal sealed class ServeQmpTests : RealKernelTest
{
    private static readonly TimeSpan s_serveStart = TimeSpan.FromSeconds(60);

    // Expiry → the policy resets the VM through QMP (boot_reason WATCHDOG set before system_reset);
    // the guest boots again (no -no-reboot) and reads why.
    private const string ExpiryScript = """
        w=/sys/class/watchdog/watchdog0
        r=$(cat $w/boot_reason)
        echo "VP-WDT boot_reason $r"
        if [ "$r" = "watchdog" ]; then
            echo "VP-WDT bootstatus $(cat $w/bootstatus)"
            exit 0
        fi
        watchdog -F -T 3 -t 1 /dev/watchdog0 &
        sleep 2
        kill -KILL $!
        echo "VP-WDT-KILLED"
        sleep 60
        echo "VP-WDT-NOT-RESET"
        """;

    // Pets with a 3 s timeout for 25 s of guest time; the test stops the VM in the middle for 10 s.
    private const string PetThroughStopScript = """
        w=/sys/class/watchdog/watchdog0
        watchdog -F -T 3 -t 1 /dev/watchdog0 &
        pid=$!
        sleep 1
        echo "VP-PETTING $(cat $w/state)"
        i=0
        while [ $i -lt 25 ]; do sleep 1; i=$((i+1)); done
        echo "VP-WDT after $(cat $w/state) $(cat $w/timeout)"
        kill -TERM $pid
        sleep 1
        echo "VP-WDT stopped $(cat $w/state)"
        """;

    [Test]
    public async Task Expiry_ServeResetsTheVmThroughQmp_TheRebootedGuestReadsWatchdog()
    {
        string initramfs = BuildInitramfs("expiry", ExpiryScript);
        using HostProcess serve = await StartServeAsync("reset");

        QemuRun run = await BootAsync(Options("expiry", initramfs, noReboot: false));
        serve.Terminate();
        Assert.That(serve.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero);
        string output = serve.Output + serve.Error;
        string journal = Journal();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted && !run.TimedOut, Is.True, run + "\n--- serve ---\n" + Tail(output, 6000));
            Assert.That(run.SerialLog, Does.Contain("VP-WDT-KILLED"), "the first boot stopped petting");
            Assert.That(run.SerialLog, Does.Not.Contain("VP-WDT-NOT-RESET"));
            Assert.That(run.SerialLog, Does.Contain("VP-WDT boot_reason watchdog"), "the reset set boot_reason before system_reset");
            Assert.That(run.QmpEvents.Any(e => e.Contains("\"RESET\"", StringComparison.Ordinal) && e.Contains("host-qmp-system-reset", StringComparison.Ordinal)), Is.True, string.Join('\n', run.QmpEvents));
            Assert.That(output, Does.Contain("QMP system_reset for wdt-serve: ok"), Tail(output, 6000));
            Assert.That(output, Does.Not.Contain("no fallback is left"));
            Assert.That(journal, Does.Contain("\"WATCHDOG\""), journal);
        }
    }

    [Test]
    public async Task VmStoppedThroughQmp_ForThreeTimeouts_NeverExpires_AfterContTheGuestPetsOn()
    {
        string initramfs = BuildInitramfs("pet-stop", PetThroughStopScript);
        using HostProcess serve = await StartServeAsync("reset");
        QemuMachineOptions options = Options("pet-stop", initramfs, noReboot: true);
        string control = Path.Combine(WorkDirectory, "control-qmp.sock");
        options = new QemuMachineOptions
        {
            Action = options.Action,
            Initramfs = options.Initramfs,
            QemuBinary = options.QemuBinary,
            Machine = options.Machine,
            VhostUserDevices = options.VhostUserDevices,
            Qmp = options.Qmp,
            NoReboot = options.NoReboot,
            Timeout = options.Timeout,
            ExtraArguments = [.. options.ExtraArguments, "-qmp", $"unix:{control},server=on,wait=off"],
        };

        Task<QemuRun> boot = BootAsync(options);
        string serial = Path.Combine(WorkDirectory, "run0", "serial.log");
        Assert.That(await WaitForAsync(() => File.Exists(serial) && File.ReadAllText(serial).Contains("VP-PETTING", StringComparison.Ordinal), boot, TimeSpan.FromSeconds(120)), Is.True, "the guest started petting");
        int linesBeforeStop = serve.Output.Split('\n').Length;

        string stopReply = await QmpCommandAsync(control, "stop");
        await Task.Delay(TimeSpan.FromSeconds(10));   // three timeouts of VM stop: the point of the test
        string afterStop = serve.Output;
        string journalWhileStopped = Journal();
        string contReply = await QmpCommandAsync(control, "cont");
        QemuRun run = await boot;
        string output = serve.Output + serve.Error;
        string stoppedPart = string.Join('\n', afterStop.Split('\n').Skip(linesBeforeStop - 1));
        serve.Terminate();
        Assert.That(serve.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero);
        string journal = Journal();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stopReply, Does.Contain("\"return\""));
            Assert.That(contReply, Does.Contain("\"return\""));
            Assert.That(run.ActionCompleted && !run.TimedOut, Is.True, run + "\n--- serve ---\n" + Tail(output, 6000));
            Assert.That(Line(run, "VP-PETTING "), Is.EqualTo("active"));
            Assert.That(Line(run, "VP-WDT after "), Is.EqualTo("active 3"), "still armed by the guest's daemon after cont");
            Assert.That(Line(run, "VP-WDT stopped "), Is.EqualTo("inactive"), "the magic close stopped it");
            Assert.That(stoppedPart, Does.Contain("suspended"), "the ring stop suspended the device\n" + stoppedPart);
            Assert.That(stoppedPart, Does.Contain("VM stopped (STOP)"), "the QMP STOP paused it");
            Assert.That(output, Does.Contain("resumed: every ring restarted where it stopped"), Tail(output, 6000));
            Assert.That(journal, Does.Contain("VIRTIO_WDT_ARMED"), "the journal saw the guest arm the watchdog\n" + journal);
            Assert.That(journal, Does.Not.Contain("\"WATCHDOG\""), "no expiry while the VM was stopped, none after");
            // (The guest's poweroff at the end resets the device for real: only the stopped VM is checked.)
            Assert.That(journalWhileStopped, Does.Not.Contain("VIRTIO_WDT_DRIVER_RESET"), "a VM stop is not a driver reset");
            Assert.That(run.QmpEvents.Count(e => e.Contains("\"STOP\"", StringComparison.Ordinal)), Is.EqualTo(1));
        }
    }

    private const string PanicScript = """
        echo "VP-PANICKING"
        echo c > /proc/sysrq-trigger
        """;

    // Panic with `preserve`: the policy stops the VM through QMP; `continue` through the
    // management socket (the host program's client subcommand) runs it again.
    [Test]
    public async Task PanicWithPreserve_TheVmIsStopped_ContinueThroughTheControlSocketRunsItAgain()
    {
        string initramfs = BuildInitramfs("panic", PanicScript);
        string control = WorkPath("control.sock");
        using HostProcess serve = await StartServeAsync("reset", onPanic: "preserve", control: control);
        string monitor = WorkPath("test-qmp.sock");
        QemuMachineOptions options = WithExtraMonitor(Options("panic", initramfs, noReboot: true, kernelArguments: ["panic=0"]), monitor);

        Task<QemuRun> boot = BootAsync(options);
        bool paused = await WaitForAsync(() => QueryStatus(monitor) == "paused", boot, TimeSpan.FromSeconds(120));
        (int continueCode, string continueOut, string continueError) = HostProcess.Run(TimeSpan.FromSeconds(60), null, "continue", "--control", control, "--device", "wdt-serve");
        string? afterContinue = QueryStatus(monitor);
        string quit = await QmpCommandAsync(monitor, "quit");
        QemuRun run = await boot;
        serve.Terminate();
        Assert.That(serve.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero);
        string output = serve.Output + serve.Error;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(paused, Is.True, run + "\n--- serve ---\n" + Tail(output, 6000));
            Assert.That(run.SerialLog, Does.Contain("VP-PANICKING"));
            Assert.That(output, Does.Contain("QMP stop for wdt-serve: ok"));
            Assert.That(continueCode, Is.Zero, continueError);
            Assert.That(continueOut, Does.Contain("\"outcome\": \"ok\""), continueOut);
            Assert.That(afterContinue, Is.EqualTo("running"), "continue resumed the VM");
            Assert.That(output, Does.Contain("QMP cont for wdt-serve: ok"));
            Assert.That(quit, Does.Contain("\"return\""));
        }
    }

    // Panic with `destroy`: the policy ends the VM with QMP `quit`; QEMU exits by itself.
    [Test]
    public async Task PanicWithDestroy_QemuExits()
    {
        string initramfs = BuildInitramfs("panic", PanicScript);
        using HostProcess serve = await StartServeAsync("reset", onPanic: "destroy");

        QemuRun run = await BootAsync(Options("panic", initramfs, noReboot: true, kernelArguments: ["panic=0"]));
        serve.Terminate();
        Assert.That(serve.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero);
        string output = serve.Output + serve.Error;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.TimedOut, Is.False, "QEMU exited (panic=0 would hang the guest for ever)\n" + Tail(output, 6000));
            Assert.That(run.SerialLog, Does.Contain("VP-PANICKING"));
            Assert.That(output, Does.Contain("QMP quit for wdt-serve: ok"));
            Assert.That(Journal(), Does.Contain("GUEST_PANICKED"));
        }
    }

    // Reboots once: a panic on the first boot, the boot reason on the second.
    private const string PanicOnceScript = """
        w=/sys/class/watchdog/watchdog0
        r=$(cat $w/boot_reason)
        echo "VP-WDT boot_reason $r"
        if [ "$r" = "panic" ]; then
            exit 0
        fi
        echo "VP-PANICKING"
        echo c > /proc/sysrq-trigger
        """;

    // Panic with `coredump-restart`: QEMU writes an ELF core of guest memory to the dump
    // directory (dump-guest-memory), then the VM is reset and the rebooted guest reads PANIC.
    [Test]
    public async Task PanicWithCoredumpRestart_AnElfCoreIsWritten_TheRebootedGuestReadsPanic()
    {
        string initramfs = BuildInitramfs("panic-once", PanicOnceScript);
        using HostProcess serve = await StartServeAsync("reset", onPanic: "coredump-restart");

        QemuRun run = await BootAsync(Options("panic-once", initramfs, noReboot: false, kernelArguments: ["panic=0"]));
        serve.Terminate();
        Assert.That(serve.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero);
        string output = serve.Output + serve.Error;
        string[] dumps = Directory.Exists(WorkPath("dumps")) ? Directory.GetFiles(WorkPath("dumps")) : [];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted && !run.TimedOut, Is.True, run + "\n--- serve ---\n" + Tail(output, 6000));
            Assert.That(run.SerialLog, Does.Contain("VP-PANICKING"));
            Assert.That(run.SerialLog, Does.Contain("VP-WDT boot_reason panic"), "the reset after the dump set boot_reason PANIC");
            Assert.That(output, Does.Contain("QMP dump-guest-memory for wdt-serve: ok").And.Contain("QMP system_reset for wdt-serve: ok"), Tail(output, 6000));
            Assert.That(dumps, Has.Length.EqualTo(1), "one dump file");
            Assert.That(Journal(), Does.Contain("\"path\":\"" + (dumps.Length == 1 ? dumps[0] : "?") + "\""), "the journal names the dump file");
        }

        (byte elfClass, ushort type, int loads, long memory) = ElfCore(dumps[0]);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(elfClass, Is.EqualTo(2), "ELFCLASS64");
            Assert.That(type, Is.EqualTo(4), "ET_CORE");
            Assert.That(loads, Is.GreaterThan(0), "PT_LOAD segments");
            Assert.That(memory, Is.GreaterThanOrEqualTo(256L << 20), "the PT_LOAD segments hold the guest's RAM");
        }
    }

    // Expiry with the watchdog action `inject-nmi`: QEMU's inject-nmi reaches the guest, whose
    // kernel reports an NMI nobody claimed (arch/x86/kernel/nmi.c unknown_nmi_error).
    [Test]
    public async Task ExpiryWithInjectNmi_TheGuestLogsTheNmi()
    {
        const string Script = """
            watchdog -F -T 3 -t 1 /dev/watchdog0 &
            sleep 2
            kill -KILL $!
            echo "VP-WDT-KILLED"
            sleep 12
            echo "VP-WDT-AFTER"
            """;
        string initramfs = BuildInitramfs("nmi", Script);
        using HostProcess serve = await StartServeAsync("inject-nmi");

        QemuRun run = await BootAsync(Options("nmi", initramfs, noReboot: true));
        serve.Terminate();
        Assert.That(serve.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero);
        string output = serve.Output + serve.Error;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted && !run.TimedOut, Is.True, run + "\n--- serve ---\n" + Tail(output, 6000));
            Assert.That(run.SerialLog, Does.Contain("VP-WDT-KILLED"));
            Assert.That(run.SerialLog, Does.Contain("NMI received for unknown reason"), "the guest's kernel saw the NMI");
            Assert.That(output, Does.Contain("QMP inject-nmi for wdt-serve: ok"), Tail(output, 6000));
            Assert.That(output, Does.Not.Contain("QMP system_reset"), "no fallback was needed");
        }
    }

    // serve is killed (SIGKILL) inside the panic's grace window: the decision (restart after the
    // grace) is journaled, the action is not. The next serve finds it, sees the VM still running
    // (query-status), arms the deadline again and resets the VM once. With -no-reboot QEMU turns
    // that system_reset into its exit (SHUTDOWN, reason host-qmp-system-reset), which is what is
    // checked: QEMU 11.1's generic vhost-user device cannot take a new back end after the old one
    // died (its reconnect restarts vhost without initialising it again and aborts in
    // vhost_dev_start; without reconnect-ms it never reconnects), so a rebooted guest could not
    // reach the new serve's device to read its boot reason.
    [Test]
    public async Task ServeKilledInTheGraceWindow_AfterRestartTheResetIsCarriedOutOnce()
    {
        string initramfs = BuildInitramfs("panic", PanicScript);
        string[] grace = ["--panic-grace", "20"];
        HostProcess first = await StartServeAsync("reset", onPanic: "restart", extra: grace);
        Task<QemuRun> boot = BootAsync(Options("panic", initramfs, noReboot: true, kernelArguments: ["panic=0"]));
        HostProcess? second = null;
        try
        {
            bool decided = await WaitForAsync(() => File.Exists(WorkPath("journal.jsonl")) && Journal().Contains("\"action\":\"grace\"", StringComparison.Ordinal), boot, TimeSpan.FromSeconds(120));
            string firstOutput = first.Output + first.Error;
            Assert.That(decided, Is.True, "the first serve decided the grace window\n" + Tail(firstOutput, 6000));
            first.Kill();
            Assert.That(first.Process.HasExited, Is.True, "kill -9");
            Assert.That(Journal(), Does.Not.Contain("\"type\":\"deadline\""), "killed before the deadline");

            second = await StartServeAsync("reset", onPanic: "restart", extra: grace, socketMayExist: true);
            QemuRun run = await boot;
            bool reported = await WaitForAsync(() => Journal().Contains("\"type\":\"outcome\"", StringComparison.Ordinal), Task.Delay(TimeSpan.FromSeconds(30)), TimeSpan.FromSeconds(30));
            second.Terminate();
            Assert.That(second.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero);
            string output = second.Output + second.Error;
            string journal = Journal();
            string[] lines = journal.Split('\n');

            using (Assert.EnterMultipleScope())
            {
                Assert.That(run.TimedOut, Is.False, "QEMU exited: the reset reached it (panic=0 would hang the guest for ever)\n" + run + "\n--- first serve ---\n" + Tail(firstOutput, 4000) + "\n--- second serve ---\n" + Tail(output, 6000));
                Assert.That(run.ExitCode, Is.Zero, run.QemuOutput);
                Assert.That(run.SerialLog, Does.Contain("VP-PANICKING"));
                Assert.That(run.QmpEvents.Count(e => e.Contains("host-qmp-system-reset", StringComparison.Ordinal)), Is.EqualTo(1), "system_reset once\n" + string.Join('\n', run.QmpEvents));
                Assert.That(output, Does.Contain("its deadline is armed again"), Tail(output, 6000));
                Assert.That(Regex.Count(output, "QMP system_reset for wdt-serve: ok"), Is.EqualTo(1), Tail(output, 6000));
                Assert.That(reported, Is.True, "the outcome was journaled");
                Assert.That(lines.Count(l => l.Contains("\"type\":\"recover\"", StringComparison.Ordinal)), Is.EqualTo(1), journal);
                Assert.That(lines.Count(l => l.Contains("\"type\":\"deadline\"", StringComparison.Ordinal) && l.Contains("\"action\":\"restart\"", StringComparison.Ordinal) && l.Contains("\"settles\":", StringComparison.Ordinal)), Is.EqualTo(1), "one decision carried out, settling the recover record\n" + journal);
                Assert.That(lines.Count(l => l.Contains("\"type\":\"outcome\"", StringComparison.Ordinal) && l.Contains("\"op\":\"reset\",\"ok\":true", StringComparison.Ordinal)), Is.EqualTo(1), "one reset carried out\n" + journal);
            }
        }
        finally
        {
            first.Dispose();
            second?.Dispose();
        }
    }

    // The ELF header and program headers of a core file (System V gABI, "ELF Header" and "Program
    // Header"; the values of Linux's include/uapi/linux/elf.h): e_ident[EI_CLASS], e_type, and the
    // PT_LOAD (1) segments with their total p_memsz.
    private static (byte ElfClass, ushort Type, int Loads, long Memory) ElfCore(string path)
    {
        using FileStream file = File.OpenRead(path);
        var header = new byte[64];
        file.ReadExactly(header);
        Assert.That(header.AsSpan(0, 4).ToArray(), Is.EqualTo(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }), "ELF magic");
        Assert.That(header[5], Is.EqualTo(1), "ELFDATA2LSB");
        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(16));
        long phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(32));
        ushort phentsize = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(54));
        ushort phnum = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(56));
        Assert.That(phentsize, Is.EqualTo(56), "Elf64_Phdr");
        var table = new byte[phentsize * phnum];
        file.Position = phoff;
        file.ReadExactly(table);
        int loads = 0;
        long memory = 0;
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = table.AsSpan(i * phentsize, phentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) == 1)
            {
                loads++;
                memory += (long)BinaryPrimitives.ReadUInt64LittleEndian(ph[40..]);
            }
        }

        return (header[4], type, loads, memory);
    }

    private static QemuMachineOptions WithExtraMonitor(QemuMachineOptions options, string path) => new()
    {
        Action = options.Action,
        Initramfs = options.Initramfs,
        QemuBinary = options.QemuBinary,
        Machine = options.Machine,
        VhostUserDevices = options.VhostUserDevices,
        KernelArguments = options.KernelArguments,
        Qmp = options.Qmp,
        NoReboot = options.NoReboot,
        Timeout = options.Timeout,
        ExtraArguments = [.. options.ExtraArguments, "-qmp", $"unix:{path},server=on,wait=off"],
    };

    // query-status on the test's own monitor: the run state, or null when QEMU is not there.
    private static string? QueryStatus(string monitor)
    {
        if (!File.Exists(monitor))
        {
            return null;
        }

        try
        {
            string reply = QmpCommandAsync(monitor, "query-status").GetAwaiter().GetResult();
            using var document = System.Text.Json.JsonDocument.Parse(reply);
            return document.RootElement.TryGetProperty("return", out var r) ? r.GetProperty("status").GetString() : null;
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or System.Text.Json.JsonException)
        {
            return null;
        }
    }

    private async Task<HostProcess> StartServeAsync(string onWatchdog, string onPanic = "log-only", string? control = null, string[]? extra = null, bool socketMayExist = false)
    {
        string socket = WorkPath("wdt.sock");
        string[] arguments = ["serve", "--vhost-user", socket, "--qmp", WorkPath("serve-qmp.sock"), "--device-id", "wdt-serve",
            "--on-watchdog", onWatchdog, "--on-panic", onPanic, "--journal", WorkPath("journal.jsonl"), "--dump-dir", WorkPath("dumps"),
            .. control is null ? Array.Empty<string>() : ["--control", control], .. extra ?? []];
        HostProcess serve = HostProcess.Start(new Dictionary<string, string> { ["VIRTIOPANIC_Device__MaxTimeout"] = "00:00:30" }, arguments);
        if (socketMayExist)
        {
            // A killed serve left its socket behind: wait for the new one to say it serves.
            bool serving = await WaitForAsync(() => (serve.Output + serve.Error).Contains("wdt-serve", StringComparison.Ordinal), Task.Delay(s_serveStart), s_serveStart);
            Assert.That(serving && !serve.Process.HasExited, Is.True, "serve did not start again:\n" + serve.Output + serve.Error);
            return serve;
        }

        bool listening = await WaitForAsync(() => File.Exists(socket), Task.Delay(s_serveStart), s_serveStart);
        if (!listening || serve.Process.HasExited)
        {
            string output = serve.Output + serve.Error;
            serve.Dispose();
            Assert.Fail("serve did not start listening:\n" + output);
        }

        return serve;
    }

    // Every journal file serve wrote (the configured one and its rotations).
    private string Journal() => string.Join('\n', Directory.EnumerateFiles(WorkDirectory, "journal*.jsonl*").Order(StringComparer.Ordinal).Select(File.ReadAllText));

    // Polls until the condition holds, the other task ends, or the limit passes.
    private static async Task<bool> WaitForAsync(Func<bool> condition, Task other, TimeSpan limit)
    {
        DateTime end = DateTime.UtcNow + limit;
        while (DateTime.UtcNow < end)
        {
            if (condition())
            {
                return true;
            }

            if (other.IsCompleted)
            {
                return condition();
            }

            await Task.Delay(100);
        }

        return condition();
    }

    private static Task<string> QmpCommandAsync(string path, string command) => QmpExecuteAsync(path, $"{{\"execute\":\"{command}\"}}");

    // One QMP command (a whole JSON object) on the test's own monitor: greeting, capabilities, the command, its reply.
    private static async Task<string> QmpExecuteAsync(string path, string json)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), timeout.Token);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
        _ = await reader.ReadLineAsync(timeout.Token);
        await writer.WriteLineAsync("{\"execute\":\"qmp_capabilities\"}".AsMemory(), timeout.Token);
        _ = await reader.ReadLineAsync(timeout.Token);
        await writer.WriteLineAsync(json.AsMemory(), timeout.Token);
        while (await reader.ReadLineAsync(timeout.Token) is { } line)
        {
            if (!line.Contains("\"event\"", StringComparison.Ordinal))
            {
                return line;
            }
        }

        return "(closed)";
    }

    private QemuMachineOptions Options(string action, string initramfs, bool noReboot, string[]? kernelArguments = null) => new()
    {
        KernelArguments = kernelArguments ?? [],
        Action = action,
        Initramfs = initramfs,
        QemuBinary = Kernel.Qemu11,
        Machine = "q35",
        VhostUserDevices = [(PciDevice, WorkPath("wdt.sock"))],
        Qmp = true,
        NoReboot = noReboot,
        ExtraArguments = ["-qmp", $"unix:{WorkPath("serve-qmp.sock")},server=on,wait=off"],
        Timeout = TimeSpan.FromSeconds(150),
    };

    private string BuildInitramfs(string action, string script)
    {
        string path = WorkPath($"initramfs-{action}.cpio.gz");
        NewInitramfs()
            .AddModule("virtio_pci")
            .AddModule("watchdog")
            .AddKernelObject(Driver(Kernel))
            .AddWdctl()
            .AddAction(action, script)
            .Build(path);
        return path;
    }
}
