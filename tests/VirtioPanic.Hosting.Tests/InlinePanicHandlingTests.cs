using VirtioPanic.Device;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests;

// VirtioPanicOptions.InlinePanicHandling: a panic_events write is handled on the vCPU thread that
// wrote it, through the device's inline observer, without giving up order or completeness.
public sealed class InlinePanicHandlingTests
{
    // Each panic_events report has one consumer, decided inside the write: the inline observer takes
    // it when nothing of the device is queued or being handled, and acts in the write's post-access
    // step. So with the service idle before each write, every panic is acted on inline: exactly.
    [Test]
    public async Task PanicWrite_VmControlIsCalledOnTheWritingVcpu_BeforeTheWriteReturns()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Destroy, StormThreshold = 0 }, o => o.InlinePanicHandling = true);
        int vcpu = rig.Guest.VcpuThreadId();
        await rig.IdleAsync();

        int inline = 0;
        for (int i = 0; i < 5; i++)
        {
            int before = rig.Vm.Operations.Length;
            rig.Guest.Panic();
            if (rig.Vm.Operations.Length == before + 1)
            {
                inline++;
                Assert.That(rig.Vm.CallThreads.Last(), Is.EqualTo(vcpu), "an action taken before the write returned ran on the writing vCPU");
            }
        }

        HandledEvent[] handled = await rig.IdleAsync();
        Assert.Multiple(() =>
        {
            Assert.That(inline, Is.EqualTo(5), "acted on before the guest's write returned");
            Assert.That(rig.Vm.Operations, Is.EqualTo(Enumerable.Repeat(VmOperation.PowerOff, 5)));
            Assert.That(handled.Select(h => h.Name), Is.EqualTo(Enumerable.Repeat("GUEST_PANICKED", 5)));
            Assert.That(handled.Select(h => h.Sequence), Is.Ordered.Ascending);
        });
    }

    [Test]
    public async Task PanicWrite_OptionOff_HandledByThePump_NotOnTheVcpu()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Destroy });
        int vcpu = rig.Guest.VcpuThreadId();

        rig.Guest.Panic();
        await rig.NextAsync("GUEST_PANICKED");

        Assert.That(rig.Vm.CallThreads, Is.EqualTo(new[] { rig.Vm.CallThreads.Single() }).And.Not.Contains(vcpu));
    }

    // The restart runs in the write's post-access step, after the register lock is released: the
    // reset takes the transport's lock afresh on the same thread (no nesting), and the events the
    // reset makes the device report go to the pump, which handles them after the panic.
    [Test]
    public async Task PanicWrite_RestartResetsDeviceAndTransportFromTheNotification_NoDeadlock_NothingLost()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Restart, StormThreshold = 0 }, o => o.InlinePanicHandling = true);
        int vcpu = rig.Guest.VcpuThreadId();
        rig.Guest.Boot();
        rig.Guest.Heartbeat();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
        await rig.IdleAsync();

        // The hypervisor resets the VM synchronously, on the vCPU thread, inside the guest's write.
        int before = rig.Vm.Operations.Length;
        rig.Vm.OnReset = () => rig.Guest.ResetPlatform(WatchdogBootReason.Panic);
        rig.Guest.Panic();

        Assert.That(rig.Vm.Operations[before..], Is.EqualTo(new[] { VmOperation.Reset }), "acted on once, inline, before the guest's write returned");
        Assert.That(rig.Vm.CallThreads.Last(), Is.EqualTo(vcpu), "on the writing vCPU");
        HandledEvent[] handled = [await rig.NextAsync(), await rig.NextAsync(), await rig.NextAsync(), .. await rig.IdleAsync()];
        WatchdogDeviceStatus status = rig.Guest.Device.GetStatus();
        Assert.Multiple(() =>
        {
            // The panic first, then what the reset made the device report, each handled once, in order.
            Assert.That(handled.Select(h => h.Name), Is.EqualTo(new[] { "GUEST_PANICKED", "VIRTIO_WDT_STOPPED", "VIRTIO_WDT_DRIVER_RESET" }));
            Assert.That(handled.Select(h => h.Sequence), Is.Ordered.Ascending);
            Assert.That(((WatchdogStoppedEvent)handled[1].Event!).Reason, Is.EqualTo(WatchdogStopReason.VmReset));
            Assert.That(status.Armed, Is.False, "the reset stopped the watchdog");
            Assert.That(status.DriverBound, Is.False, "the transport reset unbound the driver");
            Assert.That(status.BootReason, Is.EqualTo(WatchdogBootReason.Panic));
            Assert.That(status.PendingEvents, Is.Zero);
        });

        // The device works on after the reset: a fresh driver arms it again and its events are handled.
        rig.Vm.OnReset = null;
        rig.Guest.Reboot();
        rig.Guest.Heartbeat();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
    }

    [Test]
    public async Task PanicWrites_WhileTheDeviceIsBusy_TheRestAreHandledByThePump_InOrder()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Destroy, StormThreshold = 0 }, o => o.InlinePanicHandling = true);
        int vcpu = rig.Guest.VcpuThreadId();

        // The first panic acts inline and its VM-control call does not finish: it holds the device's gate.
        var blocked = new BlockingVmControl(release.Task);
        await rig.Manager.DetachAsync("wdt0");
        rig.Manager.Attach(rig.Guest.Device, blocked, new DevicePolicy { OnPanic = PanicAction.Destroy, StormThreshold = 0 });
        await rig.IdleAsync();
        rig.Guest.Panic();
        Assert.That(blocked.Calls, Is.EqualTo(1), "the first panic is being acted on, inline");

        // The gate is held: these two are declined by the inline observer and queued for the pump.
        rig.Guest.Panic();
        rig.Guest.Panic();
        Assert.That(blocked.Calls, Is.EqualTo(1), "the vCPU did not wait for the call in flight");

        release.SetResult();
        HandledEvent[] handled = [await rig.NextAsync(), await rig.NextAsync(), await rig.NextAsync(), .. await rig.IdleAsync()];
        Assert.Multiple(() =>
        {
            Assert.That(blocked.Calls, Is.EqualTo(3));
            Assert.That(handled.Select(h => h.Name), Is.EqualTo(Enumerable.Repeat("GUEST_PANICKED", 3)));
            Assert.That(handled.Select(h => h.Sequence), Is.Ordered.Ascending);
            Assert.That(blocked.Threads.First(), Is.EqualTo(vcpu), "the first call ran on the writing vCPU");
            Assert.That(blocked.Threads.Skip(1), Has.None.EqualTo(vcpu), "the declined ones were acted on by the pump");
        });
    }

    // PowerOff waits for `release` the first time; every call is counted.
    private sealed class BlockingVmControl : IVmControl
    {
        private readonly Task _release;
        private int _calls;

        public BlockingVmControl(Task release) => _release = release;

        public int Calls => Volatile.Read(ref _calls);

        public System.Collections.Concurrent.ConcurrentQueue<int> Threads { get; } = new();

        public ValueTask<VmControlResult> PauseAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        public ValueTask<VmControlResult> ResumeAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        public ValueTask<VmControlResult> ResetAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        public async ValueTask<VmControlResult> PowerOffAsync(VmActionContext context, CancellationToken cancellationToken)
        {
            Threads.Enqueue(Environment.CurrentManagedThreadId);
            if (Interlocked.Increment(ref _calls) == 1)
            {
                await _release.ConfigureAwait(false);
            }

            return VmControlResult.Success;
        }

        public ValueTask<VmControlResult> RequestShutdownAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        public ValueTask<VmControlResult> DumpGuestMemoryAsync(VmActionContext context, string path, CancellationToken cancellationToken) => Done();

        public ValueTask<VmControlResult> InjectNmiAsync(VmActionContext context, CancellationToken cancellationToken) => Done();

        private static ValueTask<VmControlResult> Done() => ValueTask.FromResult(VmControlResult.Success);
    }
}
