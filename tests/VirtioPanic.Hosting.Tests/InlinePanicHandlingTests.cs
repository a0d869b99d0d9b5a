using VirtioPanic.Device;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests;

// VirtioPanicOptions.InlinePanicHandling: a panic_events write is handled on the vCPU thread that
// wrote it, through the device's inline observer, without giving up order or completeness.
public sealed class InlinePanicHandlingTests
{
    private static readonly TimeSpan s_quiet = TimeSpan.FromMilliseconds(150);

    [Test]
    public async Task PanicWrite_VmControlIsCalledOnTheWritingVcpu_BeforeTheWriteReturns()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Destroy, StormThreshold = 0 }, o => o.InlinePanicHandling = true);
        int vcpu = rig.Guest.VcpuThreadId();

        var handled = new List<HandledEvent>();
        int inline = 0;
        for (int i = 0; i < 5; i++)
        {
            // The pump wakes for every event too (and finds it taken): let it go back to waiting,
            // else it may win the device's gate and handle the next panic itself, as it is allowed to.
            handled.AddRange(await rig.DrainAsync(s_quiet));
            int before = rig.Vm.Operations.Length;
            rig.Guest.Panic();
            if (rig.Vm.Operations.Length == before + 1)
            {
                inline++;
                Assert.That(rig.Vm.CallThreads.Last(), Is.EqualTo(vcpu), "an action taken before the write returned ran on the writing vCPU");
            }
        }

        handled.AddRange(await rig.DrainAsync(s_quiet));
        Assert.Multiple(() =>
        {
            // Even with the pump idle, a preempted vCPU can lose the gate to the pump waking for
            // the same event (then the pump acts, a moment later); on a quiet machine all five are inline.
            Assert.That(inline, Is.GreaterThanOrEqualTo(3), "acted on before the guest's write returned");
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

    [Test]
    public async Task PanicWrite_RestartResetsDeviceAndTransportFromTheNotification_NoDeadlock_NothingLost()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.Restart, StormThreshold = 0 }, o => o.InlinePanicHandling = true);
        rig.Guest.Boot();
        bool inline = false;
        HandledEvent[] handled = [];
        for (int attempt = 0; attempt < 5 && !inline; attempt++)
        {
            if (attempt > 0)
            {
                rig.Vm.OnReset = null;
                rig.Guest.Reboot();
                await rig.DrainAsync(s_quiet);
            }

            rig.Guest.Heartbeat();
            await rig.NextAsync("VIRTIO_WDT_ARMED");
            await rig.DrainAsync(s_quiet);

            // The hypervisor resets the VM synchronously, on the vCPU thread, inside the guest's write.
            int before = rig.Vm.Operations.Length;
            rig.Vm.OnReset = () => rig.Guest.ResetPlatform(WatchdogBootReason.Panic);
            rig.Guest.Panic();

            // The pump wakes for the same event and may win the device's gate first (allowed: it
            // then acts off the vCPU, a moment later); this test is about the inline path, so try again.
            inline = rig.Vm.Operations.Length == before + 1;
            handled = [await rig.NextAsync(), await rig.NextAsync(), await rig.NextAsync(), .. await rig.DrainAsync(s_quiet)];
            Assert.That(rig.Vm.Operations[before..], Is.EqualTo(new[] { VmOperation.Reset }), "acted on once, inline or by the pump");
        }

        Assert.That(inline, Is.True, "acted on inline, before the guest's write returned (in one of five tries)");
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
        await rig.DrainAsync(s_quiet);
        rig.Guest.Panic();

        // Usually inline; the pump may win the gate for this first one (see above), then it acts a moment later.
        bool firstInline = blocked.Calls == 1;
        Assert.That(SpinWait.SpinUntil(() => blocked.Calls == 1, TimeSpan.FromSeconds(10)), Is.True, "the first panic is being acted on");
        rig.Guest.Panic();
        rig.Guest.Panic();
        Assert.That(blocked.Calls, Is.EqualTo(1), "the vCPU did not wait for the call in flight");

        release.SetResult();
        HandledEvent[] handled = [await rig.NextAsync(), await rig.NextAsync(), await rig.NextAsync()];
        Assert.Multiple(() =>
        {
            Assert.That(blocked.Calls, Is.EqualTo(3));
            Assert.That(handled.Select(h => h.Name), Is.All.EqualTo("GUEST_PANICKED"));
            Assert.That(handled.Select(h => h.Sequence), Is.Ordered.Ascending);
            Assert.That(blocked.Threads.First() == vcpu, Is.EqualTo(firstInline), "the first call ran on the vCPU exactly when it was inline");
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
