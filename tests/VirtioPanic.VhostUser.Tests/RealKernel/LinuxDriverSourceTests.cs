using System.Text.RegularExpressions;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

// Buffer ownership in the reference Linux driver (src/guest/linux/virtio_wdt.c), checked on its
// source: a buffer made available is the device's until it comes back used, so no request path
// may write into the heartbeat, request or response buffer before it has checked that the last
// request is no longer in flight (after a timeout the device still owns them). A real kernel
// cannot show the difference on x86 (the late answer lands in the same bytes either way), so the
// order of the statements is what is checked. The same goes for the per-CPU heartbeats' teardown
// order and their hard-interrupt path, below.
internal sealed partial class LinuxDriverSourceTests
{
    private static string Source => File.ReadAllText(Path.Combine(TestPaths.RepositoryRoot(), "src", "guest", "linux", "virtio_wdt.c"));

    [TestCase("virtio_wdt_heartbeat", "vw->heartbeat[")]
    [TestCase("virtio_wdt_control", "vw->req")]
    [TestCase("virtio_wdt_control", "vw->resp")]
    public void RequestPath_ChecksInFlightBeforeTouchingItsBuffers(string function, string buffer)
    {
        string body = FunctionBody(Source, function);
        int check = body.IndexOf("virtio_wdt_request_idle(vw)", StringComparison.Ordinal);
        int firstTouch = body.IndexOf(buffer, StringComparison.Ordinal);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(check, Is.GreaterThanOrEqualTo(0), $"{function} checks that no request is in flight");
            Assert.That(firstTouch, Is.GreaterThan(check), $"{function} touches {buffer} only after that check");
        }
    }

    [Test]
    public void RequestIdle_ReadsTheFlagUnderTheQueueLockWithTheRequestLockHeld()
    {
        string body = FunctionBody(Source, "virtio_wdt_request_idle");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(body, Does.Contain("lockdep_assert_held(&vw->request_lock)"));
            Assert.That(body, Does.Match(@"spin_lock_irqsave\(&vw->watchdog_vq_lock[^;]*;\s*idle = !vw->request_in_flight;\s*spin_unlock_irqrestore"));
        }
    }

    [Test]
    public void CommitRecord_WriteBarrierBeforeCommitted_CommentsWhatItPairsWith()
    {
        string body = FunctionBody(Source, "virtio_wdt_commit_record");
        Match barrier = BarrierWithComment().Match(body);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(barrier.Success, Is.True, "a comment right before wmb(), and state = COMMITTED right after it");
            Assert.That(barrier.Groups["comment"].Value, Does.Contain("acquire"), "the comment names the device's acquire load it pairs with");
        }
    }

    // Per-CPU heartbeats (VIRTIO_WDT_F_VCPU_STALL, spec §6.12): the timers stop before the device
    // goes away, so no pet reaches a reset device or one whose queues are deleted (WDT-DRV-19:
    // OFFLINE for every CPU before the driver removes itself). remove, freeze and the probe's
    // error path all go through virtio_wdt_stop_queues.
    [TestCase("virtio_reset_device(vw->vdev)")]
    [TestCase("del_vqs(vw->vdev)")]
    [TestCase("WRITE_ONCE(vw->ready, false)")]
    public void StopQueues_StopsEveryCpuTimerFirst(string later)
    {
        string body = FunctionBody(Source, "virtio_wdt_stop_queues");
        int stop = body.IndexOf("virtio_wdt_stop_vcpus(vw)", StringComparison.Ordinal);
        int after = body.IndexOf(later, StringComparison.Ordinal);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stop, Is.GreaterThanOrEqualTo(0), "virtio_wdt_stop_queues stops the per-CPU heartbeats");
            Assert.That(after, Is.GreaterThan(stop), $"{later} only after the timers are stopped");
        }
    }

    [TestCase("virtio_wdt_remove")]
    [TestCase("virtio_wdt_freeze")]
    public void Teardown_GoesThroughStopQueues(string function) =>
        Assert.That(FunctionBody(Source, function), Does.Contain("virtio_wdt_stop_queues("), $"{function} stops the timers and the queues in that order");

    [Test]
    public void StopVcpus_RemovesTheHotplugInstance_WhoseTeardownCancelsThenWritesOffline()
    {
        string stop = FunctionBody(Source, "virtio_wdt_stop_vcpus");
        string offline = FunctionBody(Source, "virtio_wdt_cpu_offline");
        int cancel = offline.IndexOf("hrtimer_cancel(&vc->timer)", StringComparison.Ordinal);
        int write = offline.IndexOf("virtio_wdt_vcpu_write(vc, VIRTIO_WDT_VCPU_OFFLINE)", StringComparison.Ordinal);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stop, Does.Contain("cpuhp_state_remove_instance(virtio_wdt_cpuhp_state, &vw->cpuhp_node)"), "removing the instance runs the offline callback on every online CPU");
            Assert.That(cancel, Is.GreaterThanOrEqualTo(0), "the offline callback cancels that CPU's timer");
            Assert.That(write, Is.GreaterThan(cancel), "OFFLINE is written after the cancel, so it is that CPU's last write");
            Assert.That(Source, Does.Match(@"cpuhp_setup_state_multi\(CPUHP_AP_ONLINE_DYN,[^;]*virtio_wdt_cpu_online,\s*virtio_wdt_cpu_offline\)"), "a dynamic AP state: the callbacks run on the CPU that comes or goes");
        }
    }

    // At reboot the CPUs are stopped without hotplug. The notifier must not wait for each CPU's
    // hotplug thread (a hard-locked CPU would hang the reboot): each timer says OFFLINE itself.
    [Test]
    public void RebootNotifier_DoesNotWaitForTheCpus_EachTimerWritesOfflineAndStops()
    {
        string reboot = FunctionBody(Source, "virtio_wdt_reboot_notify");
        string timer = FunctionBody(Source, "virtio_wdt_vcpu_timer");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(reboot, Does.Contain("WRITE_ONCE(vw->vcpu_stopping, true)"));
            Assert.That(reboot, Does.Not.Contain("virtio_wdt_stop_vcpus").And.Not.Contain("cpuhp_"), "no wait for the CPUs' hotplug threads");
            Assert.That(timer, Does.Match(@"if \(READ_ONCE\(vc->vw->vcpu_stopping\)\) \{[^}]*virtio_wdt_vcpu_write\(vc, VIRTIO_WDT_VCPU_OFFLINE\);\s*return HRTIMER_NORESTART;"), "OFFLINE from that CPU, then the timer stops");
        }
    }

    [Test]
    public void StartQueues_StartsCpuTimersOnlyAfterDriverOkAndTheNoticeBuffers()
    {
        string body = FunctionBody(Source, "virtio_wdt_start_queues");
        int ready = body.IndexOf("virtio_device_ready(vw->vdev)", StringComparison.Ordinal);
        int buffers = body.IndexOf("virtio_wdt_post_buffers(vw)", StringComparison.Ordinal);
        int start = body.IndexOf("virtio_wdt_start_vcpus(vw)", StringComparison.Ordinal);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ready, Is.GreaterThanOrEqualTo(0));
            Assert.That(buffers, Is.GreaterThan(ready), "buffers after DRIVER_OK (spec §5)");
            Assert.That(start, Is.GreaterThan(buffers), "petting only once noticeq has buffers for a stall notice (spec §5, WDT-DRV-20)");
        }
    }

    // The hrtimer callback's path: one 4-byte config->set() (WDT-DRV-18), no lock, no allocation,
    // nothing that might sleep (virtio_cwrite*() call might_sleep()).
    [TestCase("virtio_wdt_vcpu_timer")]
    [TestCase("virtio_wdt_vcpu_write")]
    public void HeartbeatPath_NoLockNoAllocationNoSleepingAccessor(string function)
    {
        string body = FunctionBody(Source, function);

        Assert.That(body, Does.Not.Match(@"(spin_lock\w*|mutex_lock|raw_spin_lock\w*|k[mz]alloc|kcalloc|virtio_cwrite\w*|virtio_cread\w*|might_sleep|msleep|usleep_range)"), $"{function} runs in hard interrupt context");
    }

    [Test]
    public void HeartbeatWrite_OneFourByteConfigWrite_IndexSequenceCommand_SequenceSkipsZero()
    {
        string body = FunctionBody(Source, "virtio_wdt_vcpu_write");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(Regex.Count(body, @"->config->set\("), Is.EqualTo(1), "one register write per pet");
            Assert.That(body, Does.Match(@"config->set\(vdev, offsetof\(struct virtio_wdt_config, vcpu_heartbeat\),\s*&value, sizeof\(value\)\)"), "at vcpu_heartbeat, 4 bytes");
            Assert.That(body, Does.Contain("__le32 value;"));
            Assert.That(body, Does.Contain("vc->sequence >= VIRTIO_WDT_VCPU_SEQ_MAX ? 1 : vc->sequence + 1"), "1..32767, wrapping to 1, never 0");
            Assert.That(body, Does.Contain("command | (u32)vc->sequence << VIRTIO_WDT_VCPU_SEQ_SHIFT | vc->index"));
        }
    }

    [Test]
    public void CpuTimer_PinnedToItsCpu()
    {
        string online = FunctionBody(Source, "virtio_wdt_cpu_online");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(online, Does.Contain("hrtimer_start(&vc->timer, vw->vcpu_period, HRTIMER_MODE_REL_PINNED)"));
            Assert.That(online, Does.Match(@"if \(cpu >= vw->vcpu_count\)[^}]*return 0;"), "an index the device does not track is never written, and bring-up never fails");
            Assert.That(Source, Does.Contain("hrtimer_init(&vc->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED)"));
            Assert.That(Source, Does.Contain("vw->vcpu_period = ms_to_ktime(vw->vcpu_timeout_ms / 4)"), "four pets per vcpu_timeout_ms (WDT-DRV-19: at least two)");
        }
    }

    // The stall notice panics after notice_vq_lock is released (the panic notifier then reports
    // through eventq, and a spinlock held across panic() would be held for ever).
    [Test]
    public void NoticeDone_PanicsOnlyAfterReleasingTheQueueLock()
    {
        string body = FunctionBody(Source, "virtio_wdt_notice_done");
        int unlock = body.IndexOf("spin_unlock_irqrestore(&vw->notice_vq_lock, flags)", StringComparison.Ordinal);
        int panic = body.IndexOf("panic(\"virtio_wdt: vCPU %u stalled for %u ms\"", StringComparison.Ordinal);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(unlock, Is.GreaterThanOrEqualTo(0));
            Assert.That(panic, Is.GreaterThan(unlock), "panic() after the unlock, with the message of spec §6.10");
            Assert.That(body, Does.Contain("stalled && vcpu_stall_panic"), "vcpu_stall_panic=0 only logs");
        }
    }

    [Test]
    public void ModuleExit_UnregistersTheDriverBeforeRemovingTheHotplugState()
    {
        string body = FunctionBody(Source, "virtio_wdt_exit");
        int unregister = body.IndexOf("unregister_virtio_driver(&virtio_wdt_driver)", StringComparison.Ordinal);
        int remove = body.IndexOf("cpuhp_remove_multi_state(virtio_wdt_cpuhp_state)", StringComparison.Ordinal);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(unregister, Is.GreaterThanOrEqualTo(0));
            Assert.That(remove, Is.GreaterThan(unregister), "every device's instance is gone before the state is removed");
        }
    }

    // The text between the braces of `static ... name(...)\n{ ... \n}` (kernel style: the body
    // opens on its own line and closes with a brace in column 0).
    private static string FunctionBody(string source, string name)
    {
        Match match = Regex.Match(source, $@"^static [^\n;]*\b{Regex.Escape(name)}\([^)]*\)\s*\n\{{(?<body>.*?)\n\}}", RegexOptions.Multiline | RegexOptions.Singleline);
        Assert.That(match.Success, Is.True, $"{name} not found in virtio_wdt.c");
        return match.Groups["body"].Value;
    }

    [GeneratedRegex(@"/\*(?<comment>(?:(?!\*/).)*)\*/\s*wmb\(\);\s*WRITE_ONCE\(rec->state, cpu_to_le32\(VIRTIO_WDT_RECORD_COMMITTED\)\)", RegexOptions.Singleline)]
    private static partial Regex BarrierWithComment();
}
