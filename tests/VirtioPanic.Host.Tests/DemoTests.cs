using System.Text.Json;

namespace VirtioPanic.Host.Tests;

// The README's main command: the demo runs as a child process, finishes in seconds, exits 0, and its
// summary (and journal) say what happened.
public sealed class DemoTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(90);

    [Test]
    public void Demo_NoArguments_PanicOverPciRestartsTheGuest_AndTheSummarySaysSo()
    {
        using var directory = new TempDirectory();
        (int code, string output, string error) = Run(directory);

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, error);
            Assert.That(output, Does.Contain("Summary — scenario panic, virtio-pci, split rings"));
            Assert.That(Row(output, "GUEST_PANICKED"), Does.Contain("| restart ").And.Contain("reset (").And.Contain("| ok ").And.Contain("Kernel panic - not syncing: sysrq triggered crash"));
            Assert.That(output, Does.Contain("watchdog0: started").And.Contain("ping 3/3"));
            Assert.That(output, Does.Contain("boot reason PANIC"), "the rebooted guest read why it was reset");
            Assert.That(output, Does.Contain("VM state: off; boots: 2"));
            Assert.That(output, Does.Contain("⏱  wdt0: watchdog"), "the countdown ran");
            Assert.That(output, Does.Contain("Demo finished."));
            Assert.That(Journal(directory).Count(r => r.GetProperty("type").GetString() == "outcome"), Is.EqualTo(1));
        });
    }

    [Test]
    public void Demo_WatchdogStallOverMmioPacked_ExpiresAndResets()
    {
        using var directory = new TempDirectory();
        (int code, string output, string error) = Run(directory, "--scenario", "watchdog-stall", "--transport", "mmio", "--ring", "packed");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, error);
            Assert.That(output, Does.Contain("Summary — scenario watchdog-stall, virtio-mmio, packed rings"));
            Assert.That(Row(output, "VIRTIO_WDT_PRETIMEOUT"), Does.Contain("| log "));
            Assert.That(output, Does.Contain("pretimeout governor"));
            Assert.That(Row(output, "WATCHDOG"), Does.Contain("| reset ").And.Contain("| ok "));
            Assert.That(output, Does.Contain("boot reason WATCHDOG"));
        });
    }

    [Test]
    public void Demo_CrashKernel_LogsCrashLoadedAndTheDeadlineIsCancelled()
    {
        using var directory = new TempDirectory();
        (int code, string output, string error) = Run(directory, "--scenario", "crash-kernel");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, error);
            Assert.That(Row(output, "GUEST_CRASHLOADED"), Does.Contain("| log ").And.Contain("crash kernel has"));
            Assert.That(output, Does.Contain("crash kernel finished; deadline cancelled"));
            Assert.That(output, Does.Contain("VM-control calls: 0;"));
        });
    }

    [Test]
    public void Demo_Shutdown_NoActionTaken()
    {
        using var directory = new TempDirectory();
        (int code, string output, string error) = Run(directory, "--scenario", "shutdown");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, error);
            Assert.That(Row(output, "GUEST_PVSHUTDOWN"), Does.Contain("| log "));
            Assert.That(output, Does.Contain("VM state: off; boots: 1"));
            Assert.That(output, Does.Contain("VM-control calls: 0;"));
        });
    }

    [Test]
    public void Demo_PanicStorm_PreservesTheGuest_ThenContinueResumesIt()
    {
        using var directory = new TempDirectory();
        (int code, string output, string error) = Run(directory, "--scenario", "panic-storm");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, error);
            Assert.That(output, Does.Contain("panic storm: 3 panics within"));
            Assert.That(output, Does.Contain("| preserve ").And.Contain("pause ("));
            Assert.That(Row(output, "CONTINUE"), Does.Contain("resume (").And.Contain("| ok "));
            Assert.That(output, Does.Contain("\"storm-guard-tripped\": true"), "the management query was shown");
        });
    }

    [Test]
    public void Demo_VcpuStall_OneCpuStops_TheNotice_TheGuestsPanicNamingIt_AndThePolicysAction()
    {
        using var directory = new TempDirectory();
        (int code, string output, string error) = Run(directory, "--scenario", "vcpu-stall");

        JsonElement[] journal = Journal(directory);
        JsonElement stalled = journal.Single(r => r.GetProperty("type").GetString() == "event" && r.GetProperty("name").GetString() == "VIRTIO_WDT_VCPU_STALLED");
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, error);
            Assert.That(output, Does.Contain("Summary — scenario vcpu-stall, virtio-pci, split rings"));
            Assert.That(output, Does.Contain("per-CPU stall detection on 2 CPUs"));
            Assert.That(Row(output, "VIRTIO_WDT_VCPU_STALLED"), Does.Contain("| 1 ").And.Contain("| log "), "the device reported the stalled vCPU");
            Assert.That(output, Does.Contain("VCPU_STALL notice: CPU 1"), "the guest got the notice");
            Assert.That(Row(output, "GUEST_PANICKED"), Does.Contain("| restart ").And.Contain("reset (").And.Contain("| ok ").And.Contain("virtio_wdt: vCPU 1 stalled for"));
            Assert.That(output, Does.Contain("boot reason PANIC"), "the policy's restart, read by the next boot");
            Assert.That(Row(output, "VIRTIO_WDT_VCPU_STALL_EXPIRED"), Does.StartWith("(no "), "the guest's panic took over before stage two");
            Assert.That(stalled.GetProperty("qmp").GetProperty("virtio-wdt").GetProperty("vcpu").GetInt32(), Is.EqualTo(1));
            Assert.That(stalled.GetProperty("qmp").TryGetProperty("data", out _), Is.False, "our own event, no QEMU data");
            Assert.That(output, Does.Contain("Demo finished."));
        });
    }

    [Test]
    public void Demo_CoredumpDestroy_WritesTheDumpAndPowersOff()
    {
        using var directory = new TempDirectory();
        (int code, string output, string error) = Run(directory, "--on-panic", "coredump-destroy");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, error);
            Assert.That(Row(output, "GUEST_PANICKED"), Does.Contain("dump-guest-memory (").And.Contain("power-off (").And.Contain("| ok "));
            string dump = Directory.GetFiles(directory.File("dumps"), "*.dump").Single();
            Assert.That(output, Does.Contain($"Guest memory dumped to {dump} ({new FileInfo(dump).Length} bytes)"), "the whole of guest RAM");
            Assert.That(new FileInfo(dump).Length, Is.GreaterThanOrEqualTo(1L << 20));

            // An ELF core a debugger opens: readelf sees the core, a PT_LOAD per RAM region ending at the file's end, the vCPU's note.
            string segments = Readelf.Run("-h", "-l", "-W", dump);
            (ulong Offset, ulong PhysicalAddress, ulong FileSize)[] loads = [.. Readelf.Loads(segments)];
            Assert.That(segments, Does.Match(@"Type:\s+CORE \(Core file\)").And.Match(@"Machine:\s+Advanced Micro Devices X86-64"));
            Assert.That(loads, Is.Not.Empty);
            Assert.That(loads.Sum(l => (long)l.FileSize), Is.GreaterThanOrEqualTo(1L << 20), "guest RAM");
            Assert.That(loads[^1].Offset + loads[^1].FileSize, Is.EqualTo((ulong)new FileInfo(dump).Length), "the last segment ends the file");
            Assert.That(Readelf.Run("-n", dump), Does.Contain("NT_PRSTATUS"));
        });
    }

    [Test]
    public void Help_DocumentsEveryOptionAndServe()
    {
        (int code, string output, _) = HostProcess.Run(s_limit, null, "--help");

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            foreach (string option in new[] { "--scenario", "--transport", "--ring", "--on-panic", "--on-watchdog", "--panic-grace", "--journal", "--dump-dir", "--no-countdown", "--log-json", "serve", "appsettings.json", "watchdog-stall", "vcpu-stall", "coredump-restart", "inject-nmi", "10s dump" })
            {
                Assert.That(output, Does.Contain(option));
            }
        });
    }

    [Test]
    public void BadOptionValue_FailsWithoutRunning()
    {
        (int code, string output, string error) = HostProcess.Run(s_limit, null, "--on-panic", "explode");

        Assert.That(code, Is.Not.Zero);
        Assert.That(output + error, Does.Contain("explode"));
    }

    [Test]
    public void BadConfiguration_FailsAtStartNamingTheKey()
    {
        using var directory = new TempDirectory();
        (int code, string output, string error) = HostProcess.Run(s_limit, new Dictionary<string, string> { ["VIRTIOPANIC_VirtioPanic__Policy__StormThreshold"] = "1" }, "--journal", directory.File("j.jsonl"), "--no-countdown");

        Assert.That(code, Is.Not.Zero);
        Assert.That(output + error, Does.Contain("VirtioPanic:Policy:StormThreshold"));
    }

    [Test]
    public void Serve_ListensOnTheSocket_UntilTerminated_ThenRemovesIt()
    {
        using var directory = new TempDirectory();
        string socket = directory.File("wdt.sock");
        using HostProcess serve = HostProcess.Start(null, "serve", "--vhost-user", socket, "--journal", directory.File("serve.jsonl"), "--device-id", "serve-test");
        DateTime until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!File.Exists(socket) && DateTime.UtcNow < until && !serve.Process.HasExited)
        {
            Thread.Sleep(50);
        }

        Assert.That(File.Exists(socket), Is.True, "no socket: " + serve.Output + serve.Error);
        serve.Terminate();
        int code = serve.WaitForExit(TimeSpan.FromSeconds(30));

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero, serve.Error);
            Assert.That(serve.Output, Does.Contain("Serving device serve-test on vhost-user socket"));
            Assert.That(File.Exists(socket), Is.False, "the socket file is removed");
        });
    }

    // Without --journal each instance gets its own journal, named by device id and socket, in an
    // owner-only state directory (<temp>/virtiopanic; TMPDIR points it into the test's directory).
    [Test]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void Serve_WithoutJournalOption_JournalsToAFileOfItsOwnByDeviceAndSocket()
    {
        using var directory = new TempDirectory();
        string socket = directory.File("vm-a.sock");
        using HostProcess serve = HostProcess.Start(new Dictionary<string, string> { ["TMPDIR"] = directory.Path }, "serve", "--vhost-user", socket, "--device-id", "wdt-a");
        DateTime until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!File.Exists(socket) && DateTime.UtcNow < until && !serve.Process.HasExited)
        {
            Thread.Sleep(50);
        }

        Assert.That(File.Exists(socket), Is.True, "no socket: " + serve.Output + serve.Error);
        serve.Terminate();
        Assert.That(serve.WaitForExit(TimeSpan.FromSeconds(30)), Is.Zero, serve.Error);
        string state = Path.Combine(directory.Path, "virtiopanic");
        string journal = Path.Combine(state, "serve-wdt-a-vm-a.sock.jsonl");

        Assert.Multiple(() =>
        {
            Assert.That(File.Exists(journal), Is.True, string.Join(", ", Directory.Exists(state) ? Directory.GetFiles(state) : []));
            Assert.That(File.GetUnixFileMode(journal), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
            Assert.That(File.GetUnixFileMode(state), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute));
        });
    }

    private static (int Code, string Output, string Error) Run(TempDirectory directory, params string[] args) =>
        HostProcess.Run(s_limit, null, [.. args, "--journal", directory.File("journal.jsonl"), "--dump-dir", directory.File("dumps")]);

    private static string Row(string output, string eventName) =>
        output.Split('\n').FirstOrDefault(l => l.StartsWith("| ", StringComparison.Ordinal) && l.Contains($" {eventName} ", StringComparison.Ordinal)) ?? $"(no {eventName} row)";

    private static JsonElement[] Journal(TempDirectory directory) =>
        [.. File.ReadAllLines(directory.File("journal.jsonl")).Select(l => JsonDocument.Parse(l).RootElement)];
}
