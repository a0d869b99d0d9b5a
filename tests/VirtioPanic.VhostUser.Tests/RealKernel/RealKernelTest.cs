using NUnit.Framework.Interfaces;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>
/// Base for tests that boot the real Debian kernel under QEMU. Each test gets a work directory
/// (sockets, initramfs, serial log) that is deleted afterwards; when the test fails, the serial
/// logs of its runs are first attached to the result (TestContext.AddTestAttachment).
/// </summary>
[Category("RealKernel")]
[NonParallelizable]
internal abstract class RealKernelTest
{
    private readonly List<string> _serialLogs = [];
    private string? _workDirectory;

    protected KernelPrerequisites Kernel { get; private set; } = null!;

    protected string WorkDirectory => _workDirectory ?? throw new InvalidOperationException("no work directory outside a test");

    [SetUp]
    public void SetUpRealKernel()
    {
        Kernel = KernelPrerequisites.Require();
        _workDirectory = TestPaths.CreateTempDirectory("vp-rk");
    }

    [TearDown]
    public void TearDownRealKernel()
    {
        if (_workDirectory is null)
        {
            return;
        }

        if (TestContext.CurrentContext.Result.Outcome.Status == TestStatus.Failed)
        {
            // Keep the logs outside the work directory, which is deleted below.
            string keep = Path.Combine(TestContext.CurrentContext.WorkDirectory, "real-kernel-logs");
            Directory.CreateDirectory(keep);
            foreach (string log in _serialLogs.Where(File.Exists))
            {
                string copy = Path.Combine(keep, $"{TestContext.CurrentContext.Test.Name}-{Path.GetFileName(Path.GetDirectoryName(log))}-serial.log");
                File.Copy(log, copy, overwrite: true);
                TestContext.AddTestAttachment(copy, "guest serial console");
            }
        }

        Directory.Delete(_workDirectory, recursive: true);
        _workDirectory = null;
        _serialLogs.Clear();
    }

    /// <summary>
    /// Boots the guest once; each run gets its own sub-directory and its serial log is kept for
    /// failure reports. Cancelling <paramref name="cancellationToken"/> ends the run early: QEMU is
    /// killed by its PID and the run reports <see cref="QemuRun.TimedOut"/>.
    /// </summary>
    protected async Task<QemuRun> BootAsync(QemuMachineOptions options, CancellationToken cancellationToken = default)
    {
        string runDirectory = Path.Combine(WorkDirectory, $"run{_serialLogs.Count}");
        Directory.CreateDirectory(runDirectory);
        _serialLogs.Add(Path.Combine(runDirectory, "serial.log"));
        QemuRun run = await QemuMachine.RunAsync(Kernel, options, runDirectory, cancellationToken).ConfigureAwait(false);
        TestContext.Out.WriteLine($"guest run '{options.Action}': {run.Duration.TotalSeconds:F2} s, exit {run.ExitCode}");
        return run;
    }

    /// <summary>Boots User-Mode Linux once; like <see cref="BootAsync(QemuMachineOptions, CancellationToken)"/>, its console log is kept for failure reports.</summary>
    protected async Task<QemuRun> BootUmlAsync(UmlMachineOptions options)
    {
        string runDirectory = Path.Combine(WorkDirectory, $"run{_serialLogs.Count}");
        Directory.CreateDirectory(runDirectory);
        _serialLogs.Add(Path.Combine(runDirectory, "serial.log"));
        QemuRun run = await UmlMachine.RunAsync(Kernel, options, runDirectory).ConfigureAwait(false);
        TestContext.Out.WriteLine($"UML run '{options.Action}': {run.Duration.TotalSeconds:F2} s, exit {run.ExitCode}");
        return run;
    }

    /// <summary>An initramfs builder for the test's kernel.</summary>
    protected InitramfsBuilder NewInitramfs() => new(Kernel);

    protected string WorkPath(string name) => Path.Combine(WorkDirectory, name);
}
