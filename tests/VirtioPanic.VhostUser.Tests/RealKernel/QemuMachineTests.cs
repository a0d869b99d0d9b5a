namespace VirtioPanic.VhostUser.Tests.RealKernel;

// The runner itself, with no vhost-user device: the panic path and QMP events that the watchdog
// scenarios will build on, and the bounded-time guarantee.
internal sealed class QemuMachineTests : RealKernelTest
{
    [Test]
    public async Task RunAsync_GuestPanicsWithPvpanic_QmpReportsGuestPanickedAndQemuExits()
    {
        string initramfs = WorkPath("initramfs.cpio.gz");
        NewInitramfs()
            .AddModule("pvpanic_pci")
            .AddAction("panic", "echo c > /proc/sysrq-trigger")
            .Build(initramfs);

        QemuRun run = await BootAsync(new QemuMachineOptions
        {
            Action = "panic",
            Initramfs = initramfs,
            Devices = ["pvpanic-pci"],
            ExtraArguments = ["-action", "panic=exit-failure"],
            Qmp = true,
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.TimedOut, Is.False, run.ToString());
            Assert.That(run.ActionCompleted, Is.False, "the action never returns from a panic");
            Assert.That(run.SerialLog, Does.Contain("Kernel panic"), run.ToString());
            Assert.That(run.QmpEvents.Any(e => e.Contains("\"GUEST_PANICKED\"", StringComparison.Ordinal)), Is.True, string.Join('\n', run.QmpEvents));
            Assert.That(run.ExitCode, Is.EqualTo(1), "-action panic=exit-failure");
        }
    }

    [Test]
    public async Task RunAsync_GuestNeverPowersOff_KilledAtTheDeadline()
    {
        string initramfs = WorkPath("initramfs.cpio.gz");
        NewInitramfs()
            .AddAction("hang", "while true; do sleep 1; done")
            .Build(initramfs);

        QemuRun run = await BootAsync(new QemuMachineOptions
        {
            Action = "hang",
            Initramfs = initramfs,
            Timeout = TimeSpan.FromSeconds(5),
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.TimedOut, Is.True);
            Assert.That(run.ExitCode, Is.EqualTo(-1));
            Assert.That(run.Duration, Is.LessThan(TimeSpan.FromSeconds(20)), "killed at the deadline, not left running");
        }
    }
}
