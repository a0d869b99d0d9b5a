using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Tests.Devices;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Tests.Virtio;

// End to end over both transports: the guest's virtio core against the real transports and a
// test device, on a machine with a fake clock.
[TestFixture(VirtioTransportKind.Pci)]
[TestFixture(VirtioTransportKind.Mmio)]
public sealed class GuestVirtioDeviceTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(1);
    private readonly VirtioTransportKind _transport;

    public GuestVirtioDeviceTests(VirtioTransportKind transport) => _transport = transport;

    [Test]
    public void Boot_FindsTheDeviceByItsId()
    {
        using var rig = new EchoRig(_transport);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Guest.VirtioDevices, Has.Count.EqualTo(1));
            Assert.That(rig.Echo.DeviceId, Is.EqualTo(EchoDevice.Id));
            Assert.That(rig.Echo.TransportKind, Is.EqualTo(_transport));
            Assert.That(rig.Echo.Location, Does.Contain(_transport == VirtioTransportKind.Pci ? "pci 0000:00:01.0" : "virtio-mmio 0xd0000000"));
        }
    }

    [Test]
    public void Initialize_NegotiatesTheOfferedSubsetAndReachesDriverOk()
    {
        using var rig = new EchoRig(_transport);

        VirtioInitResult result = rig.Initialize(EchoDevice.FeatureEcho | EchoDevice.FeatureNeverOffered | VirtioFeatures.EventIndex);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result, Is.EqualTo(VirtioInitResult.Ok));
            Assert.That(rig.Echo.NegotiatedFeatures, Is.EqualTo(EchoDevice.FeatureEcho | VirtioFeatures.EventIndex | VirtioFeatures.Version1));
            Assert.That(rig.Device.AcceptedFeatures, Is.EqualTo(rig.Echo.NegotiatedFeatures));
            Assert.That(rig.Guest.Run(rig.Echo.ReadStatus), Is.EqualTo(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk));
            Assert.That(rig.Device.Activations, Is.EqualTo(1));
            Assert.That(rig.InvalidAccessCount, Is.Zero);
        }
    }

    [TestCase(false, false)]
    [TestCase(true, false)]
    [TestCase(false, true)]
    [TestCase(true, true)]
    public void Io_FiveThousandRequests_EachEchoedExactlyOnce(bool packed, bool eventIndex)
    {
        using var rig = new EchoRig(_transport);
        ulong features = EchoDevice.FeatureEcho | (packed ? VirtioFeatures.RingPacked : 0) | (eventIndex ? VirtioFeatures.EventIndex : 0);
        Assert.That(rig.Initialize(features, size: 64), Is.EqualTo(VirtioInitResult.Ok));

        EchoClient client = rig.Guest.Run(() =>
        {
            var c = new EchoClient(rig.Guest, rig.Echo.Queue(0));
            c.RunToCompletion(5000, s_timeout);
            return c;
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Echo.Queue(0).Format, Is.EqualTo(packed ? VirtqueueFormat.Packed : VirtqueueFormat.Split));
            Assert.That(client.Completed, Has.Count.EqualTo(5000));
            Assert.That(client.Completed.Distinct().Count(), Is.EqualTo(5000));
            Assert.That(client.Mismatches, Is.Zero);
            Assert.That(rig.Device.Completed(0), Is.EqualTo(5000));
            Assert.That(rig.Guest.Cpu.Faults, Is.Empty);
        }
    }

    [Test]
    public void Io_IndirectDescriptors_EchoedThroughIndirectTables()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(EchoDevice.FeatureEcho | VirtioFeatures.IndirectDescriptors, size: 16, maxIndirect: 4), Is.EqualTo(VirtioInitResult.Ok));

        EchoClient client = rig.Guest.Run(() =>
        {
            var c = new EchoClient(rig.Guest, rig.Echo.Queue(0), slots: 64) { Indirect = true };
            c.RunToCompletion(1000, s_timeout);
            return c;
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(client.Completed.Distinct().Count(), Is.EqualTo(1000));
            Assert.That(client.Mismatches, Is.Zero);
        }
    }

    [Test]
    public void Interrupts_CompletionInterruptsTheGuest_AndIsRecordedByTheController()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(), Is.EqualTo(VirtioInitResult.Ok));

        bool interrupted = rig.Guest.Run(() =>
        {
            var client = new EchoClient(rig.Guest, rig.Echo.Queue(0));
            client.Post(1);
            return rig.Echo.Queue(0).WaitForInterrupt(s_timeout);
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(interrupted, Is.True);
            Assert.That(rig.Echo.InterruptMode, Is.EqualTo(_transport == VirtioTransportKind.Pci ? VirtioInterruptMode.MsixPerQueue : VirtioInterruptMode.Line));
            Assert.That(rig.Echo.Queue(0).InterruptCount, Is.EqualTo(1));
            Assert.That(rig.Echo.Queue(1).InterruptCount, Is.Zero);
            if (_transport == VirtioTransportKind.Pci)
            {
                Assert.That(rig.Machine.Interrupts.MessageCount, Is.EqualTo(1));
            }
            else
            {
                Assert.That(rig.Machine.Interrupts.GetLineAssertionCount(5), Is.EqualTo(1));
                Assert.That(rig.Machine.Interrupts.IsLineAsserted(5), Is.False, "the driver acknowledged the interrupt");
            }
        }
    }

    [Test]
    public void Interrupts_CallbacksDisabled_NoInterruptWithinTheTimeoutOnTheVirtualClock()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(EchoDevice.FeatureEcho), Is.EqualTo(VirtioInitResult.Ok));

        Task<bool> waiting = rig.Guest.RunAsync(() =>
        {
            GuestVirtqueue queue = rig.Echo.Queue(0);
            queue.DisableCallbacks();
            new EchoClient(rig.Guest, queue).Post(4);
            return queue.WaitForInterrupt(TimeSpan.FromSeconds(5));
        });
        rig.Advance(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(1));
        bool interrupted = rig.Guest.Cpu.Join(waiting);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(interrupted, Is.False);
            Assert.That(rig.Device.Completed(0), Is.EqualTo(4));
            Assert.That(rig.Echo.Queue(0).InterruptCount, Is.Zero);
        }
    }

    [Test]
    public void ConfigChange_ReachesTheDriversCallback()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(), Is.EqualTo(VirtioInitResult.Ok));
        uint seen = 0;
        rig.Guest.Run(() => rig.Echo.ConfigChanged = d => seen = d.ReadConfigUInt32(4));

        rig.Device.ChangeConfig();
        bool changed = rig.Guest.Run(() => rig.Guest.Cpu.WaitUntil(() => rig.Echo.ConfigChangeCount == 1, s_timeout));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(changed, Is.True);
            Assert.That(seen, Is.EqualTo(1));
        }
    }

    [Test]
    public void ReadConfig_ChangedBetweenTwoAccesses_IsRetriedUntilConsistent()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(), Is.EqualTo(VirtioInitResult.Ok));
        rig.Device.TearNextReads(2);

        byte[] config = rig.Guest.Run(() =>
        {
            byte[] bytes = new byte[8];
            rig.Echo.ReadConfig(0, bytes);
            return bytes;
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(BitConverter.ToUInt32(config, 0), Is.EqualTo(BitConverter.ToUInt32(config, 4)));
            Assert.That(BitConverter.ToUInt32(config, 0), Is.EqualTo(2));
            Assert.That(rig.Echo.ConfigGenerationRetries, Is.EqualTo(2));
        }
    }

    [Test]
    public void Reset_ThenReprobe_IoWorksAgain()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(), Is.EqualTo(VirtioInitResult.Ok));
        rig.Guest.Run(() => new EchoClient(rig.Guest, rig.Echo.Queue(0)).RunToCompletion(100, s_timeout));

        bool reset = rig.Guest.Run(rig.Echo.Reset);
        DeviceStatus afterReset = rig.Guest.Run(rig.Echo.ReadStatus);
        VirtioInitResult again = rig.Initialize();
        EchoClient client = rig.Guest.Run(() =>
        {
            var c = new EchoClient(rig.Guest, rig.Echo.Queue(0));
            c.RunToCompletion(100, s_timeout);
            return c;
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(reset, Is.True);
            Assert.That(afterReset, Is.EqualTo(DeviceStatus.None));
            Assert.That(again, Is.EqualTo(VirtioInitResult.Ok));
            Assert.That(rig.Device.Activations, Is.EqualTo(2));
            Assert.That(client.Completed, Has.Count.EqualTo(100));
            Assert.That(client.Mismatches, Is.Zero);
            Assert.That(rig.Device.Completed(0), Is.EqualTo(200));
        }
    }

    [Test]
    public void Snapshot_MidIo_RestoredTransportAndMemory_NoBufferLostOrCompletedTwice()
    {
        using var rig = new EchoRig(_transport);
        Assert.That(rig.Initialize(size: 64), Is.EqualTo(VirtioInitResult.Ok));
        EchoClient client = rig.Guest.Run(() =>
        {
            var c = new EchoClient(rig.Guest, rig.Echo.Queue(0));
            c.RunToCompletion(300, s_timeout);
            return c;
        });

        // Mid-I/O: the back end is slow, 32 requests (64 descriptors) are available and not yet consumed.
        rig.Device.Stalled = true;
        int posted = rig.Guest.Run(() => client.Post(64));
        rig.Guest.WaitForQuiescence();
        MachineSnapshot snapshot = rig.Machine.SaveSnapshot();

        // After the save the source host goes on: it completes the buffers (those completions
        // must vanish with the restore) and guest memory is scribbled; then the VM is restored.
        rig.Device.ProcessAll();
        rig.Guest.WriteMemory(rig.Echo.Queue(0).Ring.Config.DeviceArea, new byte[64]);
        long completedBeforeRestore = rig.Device.Completed(0);
        rig.Device.Stalled = false;
        SnapshotStatus status = rig.Machine.RestoreSnapshot(snapshot);

        rig.Guest.Run(() =>
        {
            client.Drain(s_timeout);
            client.RunToCompletion(500, s_timeout);
        });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status, Is.EqualTo(SnapshotStatus.Ok));
            Assert.That(posted, Is.EqualTo(32), "the snapshot was taken with a full ring in flight");
            Assert.That(rig.Device.Completed(0), Is.EqualTo(completedBeforeRestore + 32 + 500), "the restored device consumed the 32 again");
            Assert.That(client.Completed.Distinct().Count(), Is.EqualTo(client.Completed.Count), "no completion twice");
            Assert.That(client.Completed.Order(), Is.EqualTo(Enumerable.Range(0, 832).Select(i => (uint)i)), "no buffer lost");
            Assert.That(client.InFlight, Is.Zero);
            Assert.That(client.Mismatches, Is.Zero);
        }
    }
}
