using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Watchdog;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Tests.Watchdog;

// Driver requirements of spec/virtio-watchdog.md §7, checked on the wire: the SpyDevice decodes
// what the harness's WatchdogDriver puts in guest memory and on the transport, over PCI with
// split rings.
[Category("Conformance")]
public sealed class WatchdogDriverConformanceTests
{
    private const uint Committed = 0x4D4D4F43;

    [Test]
    public void WDT_DRV_1_NeverAcceptsPretimeoutWithoutControl_NorLogTailWithoutEvents()
    {
        using var rig = new WatchdogRig();

        rig.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.Pretimeout | WatchdogFeatures.LogTail | WatchdogFeatures.PanicConfig });
        var withoutPrerequisites = (WatchdogFeatures)(rig.Spy.AcceptedFeatures[^1] & (ulong)WatchdogFeatures.All);
        rig.Probe();
        var all = (WatchdogFeatures)(rig.Spy.AcceptedFeatures[^1] & (ulong)WatchdogFeatures.All);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(withoutPrerequisites, Is.EqualTo(WatchdogFeatures.PanicConfig));
            Assert.That(all, Is.EqualTo(WatchdogFeatures.All & ~WatchdogFeatures.VcpuStall), "every bit offered (VCPU_STALL is offered only with a vCPU count)");
            foreach (ulong accepted in rig.Spy.AcceptedFeatures)
            {
                var features = (WatchdogFeatures)accepted;
                Assert.That((features & WatchdogFeatures.Pretimeout) == 0 || (features & WatchdogFeatures.Control) != 0, Is.True);
                Assert.That((features & WatchdogFeatures.LogTail) == 0 || (features & WatchdogFeatures.Events) != 0, Is.True);
            }
        }
    }

    [Test]
    public void WDT_DRV_2_HeartbeatIsWritableOnlyWithFirstByteZero_AndAnAnswerOtherThanOneIsADeviceFault()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.Events | WatchdogFeatures.PanicConfig });

        WatchdogResult started = rig.Run(driver.Start);
        ObservedChain heartbeat = rig.Spy.ChainsOn(0).Single();
        rig.Spy.CorruptHeartbeats = true;
        WatchdogResult corrupted = rig.Run(driver.Ping);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(started, Is.EqualTo(WatchdogResult.Ok));
            Assert.That(heartbeat.Buffers.All(b => b.Writable), Is.True);
            Assert.That(heartbeat.Buffers[0].Length, Is.GreaterThanOrEqualTo(1));
            Assert.That(heartbeat.Buffers[0].Bytes[0], Is.Zero, "initialised to 0");
            Assert.That(corrupted, Is.EqualTo(WatchdogResult.DeviceError));
            Assert.That(driver.HeartbeatFaults, Is.EqualTo(1));
        }
    }

    [Test]
    public void WDT_DRV_3_KeepsAnArmedWatchdogAliveAtLeastTwicePerTimeout()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.Events });
        rig.Run(() => (driver.Start(), driver.Stop()));   // cannot stop without CONTROL: the core worker takes over

        rig.Advance(TimeSpan.FromSeconds(100));

        DateTimeOffset[] keepalives = [.. rig.Spy.Notifications.Where(n => n.Queue == 0).Select(n => n.Time)];
        TimeSpan[] gaps = [.. keepalives.Zip(keepalives.Skip(1), (a, b) => b - a)];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(keepalives, Has.Length.GreaterThanOrEqualTo(10));
            Assert.That(gaps.Max(), Is.LessThanOrEqualTo(driver.Timeout / 2));
            Assert.That(rig.Time.GetUtcNow() - keepalives[^1], Is.LessThanOrEqualTo(driver.Timeout / 2));
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>(), Is.Empty);
        }
    }

    [Test]
    public void WDT_DRV_4_NoReadableBufferOnWatchdogQueueWithoutControl()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.All & ~WatchdogFeatures.Control });

        (WatchdogResult timeout, TimeSpan? left) = rig.Run(() =>
        {
            driver.Open();
            driver.Ping();
            driver.Write("V"u8);
            driver.Release();
            return (driver.SetTimeout(TimeSpan.FromSeconds(5)), driver.GetTimeLeft());
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Spy.ChainsOn(0).Count(), Is.GreaterThanOrEqualTo(3));
            Assert.That(rig.Spy.ChainsOn(0).SelectMany(c => c.Buffers).All(b => b.Writable), Is.True);
            Assert.That(timeout, Is.EqualTo(WatchdogResult.NotSupported));
            Assert.That(left, Is.Null);
        }
    }

    [Test]
    public void WDT_DRV_5_ControlRequestIs16ReadableBytesWithReservedZero_Then16Writable()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe();

        rig.Run(() => new[]
        {
            driver.SetTimeout(TimeSpan.FromSeconds(30)), driver.SetPretimeout(TimeSpan.FromSeconds(5)), driver.Start(),
            driver.Ping(), driver.GetState() is null ? WatchdogResult.DeviceError : WatchdogResult.Ok, driver.Stop(),
        });

        ObservedChain[] requests = [.. rig.Spy.ChainsOn(0)];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(requests.Select(Command).Distinct().Order(), Is.EqualTo(new ushort[] { 1, 2, 3, 4, 5, 6 }));
            foreach (ObservedChain request in requests)
            {
                Assert.That(request.Buffers[0].Writable, Is.False);
                Assert.That(request.Buffers[0].Length, Is.EqualTo(16));
                Assert.That(request.Buffers[0].Bytes.AsSpan(2, 2).ContainsAnyExcept((byte)0), Is.False, "reserved0");
                Assert.That(request.Buffers[0].Bytes.AsSpan(8, 8).ContainsAnyExcept((byte)0), Is.False, "reserved1");
                Assert.That(request.Buffers.Skip(1).All(b => b.Writable), Is.True);
                Assert.That(request.Buffers.Skip(1).Sum(b => b.Length), Is.GreaterThanOrEqualTo(16));
            }
        }
    }

    [Test]
    public void WDT_DRV_6_TimeoutsOutsideTheBoundsAndPretimeoutsNotBelowTheTimeout_AreNeverSent()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe();
        int before = rig.Spy.ChainsOn(0).Count();

        WatchdogResult[] refused = rig.Run(() => new[]
        {
            driver.SetTimeout(driver.MinTimeout - TimeSpan.FromMilliseconds(1)),
            driver.SetTimeout(driver.MaxTimeout + TimeSpan.FromMilliseconds(1)),
            driver.SetPretimeout(driver.Timeout),
        });
        int afterRefused = rig.Spy.ChainsOn(0).Count();
        rig.Run(() => (driver.SetTimeout(driver.MinTimeout), driver.SetPretimeout(driver.MinTimeout - TimeSpan.FromMilliseconds(1)), driver.Start()));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(refused, Is.All.EqualTo(WatchdogResult.InvalidArgument));
            Assert.That(afterRefused, Is.EqualTo(before));
            foreach (ObservedChain request in rig.Spy.ChainsOn(0))
            {
                uint value = BinaryPrimitives.ReadUInt32LittleEndian(request.Buffers[0].Bytes.AsSpan(4));
                if (Command(request) is 2 or 5)
                {
                    Assert.That(value, Is.InRange(2000u, 600_000u));
                }
                else if (Command(request) == 6)
                {
                    Assert.That(value, Is.LessThan(2000u));
                }
            }
        }
    }

    [Test]
    public void WDT_DRV_7_NoSetPretimeoutWithoutTheFeature()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.All & ~WatchdogFeatures.Pretimeout });

        WatchdogResult result = rig.Run(() => driver.SetPretimeout(TimeSpan.FromSeconds(1)));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result, Is.EqualTo(WatchdogResult.NotSupported));
            Assert.That(rig.Spy.ChainsOn(0).Select(Command), Has.None.EqualTo(6));
        }
    }

    [Test]
    public void WDT_DRV_7_NoticeBuffersAreWritable16Bytes_AndOneStaysPostedAfterANotice()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe();
        rig.Run(() => (driver.SetTimeout(TimeSpan.FromSeconds(10)), driver.SetPretimeout(TimeSpan.FromSeconds(2)), driver.Start()));

        rig.Advance(TimeSpan.FromSeconds(8));

        ObservedChain[] notices = [.. rig.Spy.ChainsOn(2)];
        int outstanding = notices.Length - driver.PretimeoutNotices.Count;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(driver.PretimeoutNotices, Has.Count.EqualTo(1));
            Assert.That(notices.All(c => c.Buffers.Length == 1 && c.Buffers[0].Writable && c.Buffers[0].Length >= 16), Is.True);
            Assert.That(outstanding, Is.GreaterThanOrEqualTo(1));
        }
    }

    [Test]
    public void WDT_DRV_8_RecordBuffersMadeAvailableUncommittedWithStatusPending_AlsoWhenReposted()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe();
        rig.Run(() => driver.Panic(new PanicReport { Message = "first" }));
        rig.Guest.WaitForQuiescence();

        ObservedChain[] records = [.. rig.Spy.ChainsOn(1)];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(records.Count(c => c.AtActivation), Is.EqualTo(4));
            Assert.That(records.Count(c => !c.AtActivation), Is.EqualTo(1), "the used buffer was posted again");
            foreach (ObservedChain record in records)
            {
                Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(record.Buffers[0].Bytes), Is.Not.EqualTo(Committed));
                Assert.That(record.Buffers[^1].Writable, Is.True);
                Assert.That(record.Buffers[^1].Bytes.AsSpan(0, 8).ContainsAnyExcept((byte)0), Is.False, "status PENDING");
            }
        }
    }

    [Test]
    public void WDT_DRV_9_RecordCommittedLast_ThenEventqNotifiedEvenWhenNotificationsAreSuppressed()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { RingFeatures = 0 });
        VirtqueueConfig eventq = rig.VirtioDevice.Queue(1).Ring.Config;
        rig.Machine.Memory.TryStoreUInt16Release(eventq.DeviceArea + SplitRingLayout.UsedFlags, SplitRingLayout.UsedFlagNoNotify);
        int notifiesBefore = rig.Spy.NotifyCount(1);

        PanicReportPath path = rig.Run(() => driver.Panic(new PanicReport { Message = "suppressed", Codes = [7] }));

        // The first eventq notification after the commit (later ones re-post the used buffer).
        byte[][] recordsAtNotify = rig.Spy.Notifications.Where(n => n.Queue == 1).ElementAt(notifiesBefore).Records;
        byte[][] committed = [.. recordsAtNotify.Where(r => BinaryPrimitives.ReadUInt32LittleEndian(r) == Committed)];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(path, Is.EqualTo(PanicReportPath.EventRecord));
            Assert.That(rig.Spy.NotifyCount(1), Is.GreaterThan(notifiesBefore), "notified despite VIRTQ_USED_F_NO_NOTIFY");
            Assert.That(committed, Has.Length.EqualTo(1));
            Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(committed[0].AsSpan(0x40)), Is.EqualTo(10), "the record was complete when it was committed");
            Assert.That(Encoding.UTF8.GetString(committed[0], 0x50, 10), Is.EqualTo("suppressed"));
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(committed[0].AsSpan(0x18)), Is.EqualTo(7));
            Assert.That(rig.Spy.ChainsOn(1).All(c => c.Buffers.Length <= 8), Is.True);
        }
    }

    [Test]
    public void WDT_DRV_10_RecordsFilledInTheOrderPosted_AtMost16Posted()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { RecordBuffers = 4, PanicStatusPolls = 10 });
        rig.Spy.SwallowEventQueue = true;

        rig.Run(() => (driver.Panic(new PanicReport { Message = "one" }), driver.Shutdown()));

        byte[][][] atNotify = [.. rig.Spy.Notifications.Where(n => n.Queue == 1).Select(n => n.Records)];
        bool[] CommittedFlags(byte[][] records) => [.. records.Select(r => BinaryPrimitives.ReadUInt32LittleEndian(r) == Committed)];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Spy.ChainsOn(1).Count(), Is.LessThanOrEqualTo(16));
            Assert.That(CommittedFlags(atNotify[0]), Is.EqualTo(new[] { true, false, false, false }));
            Assert.That(CommittedFlags(atNotify[1]), Is.EqualTo(new[] { true, true, false, false }));
            Assert.That(() => rig.Probe(new WatchdogDriverOptions { RecordBuffers = 17 }), Throws.TypeOf<ArgumentOutOfRangeException>());
        }
    }

    [Test]
    public void WDT_DRV_11_RecordFieldsWithinTheLimits()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { PanicStatusPolls = 10 });
        rig.Spy.SwallowEventQueue = true;

        rig.Run(() => driver.Panic(new PanicReport
        {
            Message = new string('é', 1500),
            LogTail = new string('x', 40_000),
            Codes = [1, 2, 3, 4, 5, 6, 7],
            CodeFormat = (PanicCodeFormat)9,
        }));

        byte[] record = rig.Spy.Notifications.Last(n => n.Queue == 1).Records[0];
        ObservedChain chain = rig.Spy.ChainsOn(1).First();
        int messageLength = BinaryPrimitives.ReadUInt16LittleEndian(record.AsSpan(0x40));
        int tailLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(0x44));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(record[0x06], Is.EqualTo(5), "code_count");
            Assert.That(record[0x07], Is.LessThanOrEqualTo(2), "code_format");
            Assert.That(messageLength, Is.InRange(1023, 1024), "whole UTF-8 characters, at most 1024 bytes");
            Assert.That(tailLength, Is.EqualTo(16384));
            Assert.That(record.AsSpan(0x42, 2).ContainsAnyExcept((byte)0), Is.False, "reserved0");
            Assert.That(record.AsSpan(0x48, 8).ContainsAnyExcept((byte)0), Is.False, "reserved1");
            Assert.That(80 + messageLength + tailLength, Is.LessThanOrEqualTo((int)chain.Buffers.Where(b => !b.Writable).Sum(b => b.Length)));
            Assert.That(Encoding.UTF8.GetString(record, 0x50, messageLength), Is.EqualTo(new string('é', messageLength / 2)));
        }
    }

    [Test]
    public void WDT_DRV_11_NoLogTailWithoutTheFeature_UnusedCodesZero()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.All & ~WatchdogFeatures.LogTail, PanicStatusPolls = 10 });
        rig.Spy.SwallowEventQueue = true;

        rig.Run(() => driver.Panic(new PanicReport { Message = "m", LogTail = "tail", Codes = [9, 8] }));

        byte[] record = rig.Spy.Notifications.Last(n => n.Queue == 1).Records[0];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(0x44)), Is.Zero);
            Assert.That(record[0x06], Is.EqualTo(2));
            Assert.That(record.AsSpan(0x18 + 16, 24).ContainsAnyExcept((byte)0), Is.False, "codes[2..4]");
        }
    }

    [Test]
    public void WDT_DRV_12_PanicEventsReadFirst_OneSupportedBitPerWrite_EvenBeforeNegotiation()
    {
        using var rig = new WatchdogRig();
        DeviceStatus statusBefore = rig.Pci!.DeviceStatus;

        bool written = rig.Run(() => WatchdogDriver.ReportMinimal(rig.VirtioDevice, WatchdogPanicEvent.Panicked));

        ConfigAccess[] panicField = [.. rig.Spy.ConfigAccesses.Where(a => a.Offset == 0x08)];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(statusBefore, Is.EqualTo(DeviceStatus.None));
            Assert.That(written, Is.True);
            Assert.That(panicField.Select(a => a.Write), Is.EqualTo(new[] { false, true }), "read, then one write");
            Assert.That(BitOperations.PopCount(panicField[1].Value), Is.EqualTo(1));
            Assert.That(panicField[1].Value & ~panicField[0].Value, Is.Zero, "only supported bits");
            Assert.That(rig.EventsOf<GuestPanickedEvent>(), Has.Count.EqualTo(1));
        }
    }

    [Test]
    public void WDT_DRV_12_NoPanicEventsWriteWhenNotOffered()
    {
        using var rig = new WatchdogRig(options: new WatchdogDeviceOptions { Features = WatchdogFeatures.All & ~WatchdogFeatures.PanicConfig });
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.Control });

        (bool minimal, PanicReportPath path) = rig.Run(() => (WatchdogDriver.ReportMinimal(rig.VirtioDevice, WatchdogPanicEvent.Panicked), driver.Panic(new PanicReport())));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(minimal, Is.False);
            Assert.That(path, Is.EqualTo(PanicReportPath.None));
            Assert.That(rig.Spy.ConfigAccesses.Where(a => a.Write && a.Offset == 0x08), Is.Empty);
        }
    }

    [Test]
    public void WDT_DRV_13_RecordPathWhenLive_BoundedWait_FallbackWhenNotAcceptedOrNoBufferFree()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe(new WatchdogDriverOptions { RecordBuffers = 1, PanicStatusPolls = 100 });

        PanicReportPath live = rig.Run(() => driver.Panic(new PanicReport { Message = "live" }));
        rig.Guest.WaitForQuiescence();
        bool configWrittenWhileLive = rig.Spy.ConfigAccesses.Any(a => a.Write && a.Offset == 0x08);
        rig.Spy.SwallowEventQueue = true;
        int notifies = rig.Spy.NotifyCount(1);
        PanicReportPath notAccepted = rig.Run(() => driver.Panic(new PanicReport { Message = "lost" }));
        int notifiesAfterSecond = rig.Spy.NotifyCount(1);
        PanicReportPath noBuffer = rig.Run(() => driver.Panic(new PanicReport { Message = "no buffer" }));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(live, Is.EqualTo(PanicReportPath.EventRecord));
            Assert.That(configWrittenWhileLive, Is.False);
            Assert.That(notAccepted, Is.EqualTo(PanicReportPath.ConfigField), "PENDING after the bounded poll");
            Assert.That(notifiesAfterSecond, Is.EqualTo(notifies + 1));
            Assert.That(noBuffer, Is.EqualTo(PanicReportPath.ConfigField));
            Assert.That(rig.Spy.NotifyCount(1), Is.EqualTo(notifiesAfterSecond), "no free buffer: straight to panic_events");
            Assert.That(rig.EventsOf<GuestPanickedEvent>().Select(e => e.Source), Is.EqualTo(new[] { WatchdogEventSource.EventRecord, WatchdogEventSource.ConfigField, WatchdogEventSource.ConfigField }));
        }
    }

    [Test]
    public void WDT_DRV_14_CrashKernelLoaded_ReportedAsCrashLoaded_OnBothPaths()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver rich = rig.Probe();
        rig.Run(() =>
        {
            rich.CrashKernelLoaded = true;
            return rich.Panic(new PanicReport { Message = "kdump" });
        });
        ushort recordType = BinaryPrimitives.ReadUInt16LittleEndian(rig.Spy.Notifications.Last(n => n.Queue == 1).Records[0].AsSpan(0x04));
        WatchdogDriver minimal = rig.Probe(new WatchdogDriverOptions { Features = WatchdogFeatures.PanicConfig });
        rig.Run(() =>
        {
            minimal.CrashKernelLoaded = true;
            return minimal.Panic(new PanicReport());
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(recordType, Is.EqualTo(2));
            Assert.That(rig.Spy.ConfigAccesses.Last(a => a.Write && a.Offset == 0x08).Value, Is.EqualTo(2));
            Assert.That(rig.EventsOf<GuestCrashLoadedEvent>(), Has.Count.EqualTo(2));
            Assert.That(rig.EventsOf<GuestPanickedEvent>(), Is.Empty);
        }
    }

    [Test]
    public void WDT_DRV_15_BootReasonNotTouchedWhenNotOffered()
    {
        using var rig = new WatchdogRig(options: new WatchdogDeviceOptions { Features = WatchdogFeatures.All & ~WatchdogFeatures.BootReason });
        rig.Device.SetBootReason(WatchdogBootReason.Watchdog);

        WatchdogDriver driver = rig.Probe();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(driver.BootReason, Is.EqualTo(WatchdogBootReason.None));
            Assert.That(rig.Spy.ConfigAccesses.Where(a => a.Offset == 0x00), Is.Empty);
        }
    }

    [Test]
    public void WDT_DRV_15_BootReasonReadBeforeItIsCleared_AndOnlyZeroWritten()
    {
        using var rig = new WatchdogRig();
        rig.Device.SetBootReason(WatchdogBootReason.Panic);

        WatchdogDriver driver = rig.Probe();

        ConfigAccess[] bootReason = [.. rig.Spy.ConfigAccesses.Where(a => a.Offset == 0x00)];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(driver.BootReason, Is.EqualTo(WatchdogBootReason.Panic));
            Assert.That(bootReason.Select(a => (a.Write, a.Value)), Is.EqualTo(new[] { (false, 2u), (true, 0u) }));
        }
    }

    [Test]
    public void WDT_DRV_16_NowayoutWatchdogSurvivesTheReset_AndTheNextDriverKeepsItAlive()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver first = rig.Probe(new WatchdogDriverOptions { Nowayout = true });
        rig.Run(first.Start);
        rig.Guest.Run(first.Remove);
        bool armedAfterReset = rig.Device.GetStatus().Armed;

        WatchdogDriver second = rig.Probe();
        rig.Advance(TimeSpan.FromSeconds(100));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Spy.ChainsOn(0).Select(Command), Does.Contain((ushort)7), "SET_NOWAYOUT at start");
            Assert.That(armedAfterReset, Is.True);
            Assert.That(second.IsHardwareRunning, Is.True, "found ARMED at probe");
            Assert.That(second.WorkerKeepalives, Is.GreaterThanOrEqualTo(9));
            Assert.That(rig.EventsOf<WatchdogExpiredEvent>(), Is.Empty);
        }
    }

    [Test]
    public void WDT_DRV_17_ARequestCompletesWhenTheDeviceReturnsIt_NotWhenTheNotificationReturns()
    {
        using var rig = new WatchdogRig();
        WatchdogDriver driver = rig.Probe();
        rig.Spy.HoldWatchdogQueue = true;

        Task<WatchdogResult> start = rig.Guest.RunAsync(driver.Start);
        rig.Guest.WaitForQuiescence();
        bool doneBeforeTheDevice = start.IsCompleted;
        bool armedBeforeTheDevice = rig.Device.GetStatus().Armed;
        rig.Spy.HoldWatchdogQueue = false;
        int released = rig.Spy.ReleaseHeld();
        WatchdogResult result = rig.Guest.Cpu.Join(start);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(doneBeforeTheDevice, Is.False);
            Assert.That(armedBeforeTheDevice, Is.False);
            Assert.That(released, Is.EqualTo(1));
            Assert.That(result, Is.EqualTo(WatchdogResult.Ok));
            Assert.That(rig.Device.GetStatus().Armed, Is.True);
        }
    }

    private static ushort Command(ObservedChain chain) =>
        chain.Buffers[0].Writable ? (ushort)0 : BinaryPrimitives.ReadUInt16LittleEndian(chain.Buffers[0].Bytes);
}
