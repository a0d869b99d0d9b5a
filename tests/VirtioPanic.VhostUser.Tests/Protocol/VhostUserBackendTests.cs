using System.Buffers.Binary;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.VhostUser.Tests.Devices;
using VirtioPanic.VhostUser.Tests.RealKernel;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser.Tests.Protocol;

// The back end driven by an in-process front end that speaks the wire protocol byte for byte.
[NonParallelizable]
internal sealed class VhostUserBackendTests
{
    private const ulong ProtocolFeaturesBit = 1UL << 30;
    private const ulong RingFeatures = VirtioFeatures.EventIndex | VirtioFeatures.IndirectDescriptors;

    [Test]
    public async Task Qemu72Sequence_RngDevice_ServesDirectAndIndirectChainsAndStopsAtTheirCount()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();

        // realize
        ulong offered = front.GetFeatures();
        ulong protocol = front.GetProtocolFeatures();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, protocol);
        front.Send(VhostUserRequest.SetOwner, []);
        Assert.That(front.GetFeatures(), Is.EqualTo(offered));
        int call0 = front.NewEventFd();
        int err = front.NewEventFd();
        front.SendU64(VhostUserRequest.SetVringCall, 0, fds: [call0]);
        front.SendU64(VhostUserRequest.SetVringErr, 0, fds: [err]);

        // DRIVER_OK: QEMU 7.2's rng stub forwards the guest's EVENT_IDX and INDIRECT_DESC unasked.
        int call = front.NewEventFd();
        front.SendU64(VhostUserRequest.SetVringCall, 0, fds: [call]);
        front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1 | ProtocolFeaturesBit | RingFeatures, needReply: true);
        Assert.That(front.ReadU64Reply(VhostUserRequest.SetFeatures), Is.Zero, "SET_FEATURES acked");
        front.SendQemuStyleMemTable(needReply: true);
        Assert.That(front.ReadU64Reply(VhostUserRequest.SetMemTable), Is.Zero, "SET_MEM_TABLE acked");
        SplitRingDriver ring = front.NewRing(8, eventIndex: true);
        front.ConfigureRing(0, ring);
        int kick = front.NewEventFd();
        front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [kick]);
        front.SendState(VhostUserRequest.SetVringEnable, 0, 1, needReply: true);
        Assert.That(front.ReadU64Reply(VhostUserRequest.SetVringEnable), Is.Zero, "SET_VRING_ENABLE acked");
        int latestCall = front.NewEventFd();
        front.SendU64(VhostUserRequest.SetVringCall, 0, fds: [latestCall]);

        // The driver posts one direct and one indirect (two-buffer) request, then kicks.
        ulong a = front.Allocator.Allocate(16);
        ulong b = front.Allocator.Allocate(8);
        ulong c = front.Allocator.Allocate(8);
        Assert.That(ring.TryAdd([new DriverBuffer(a, 16, DeviceWritable: true)], out _), Is.True);
        Assert.That(ring.TryAddIndirect([new DriverBuffer(b, 8, true), new DriverBuffer(c, 8, true)], out _), Is.True);
        ring.Publish();
        Assert.That(ring.NeedsKick(), Is.True);
        FakeFrontEnd.Signal(kick);

        bool interrupted = FakeFrontEnd.WaitSignalled(latestCall);
        var reaped = new List<UsedBuffer>();
        while (ring.TryGetUsed(out UsedBuffer used) == UsedBufferStatus.Ok)
        {
            reaped.Add(used);
        }

        byte[] guest = new byte[32];
        Assert.That(front.Memory.TryRead(a, guest.AsSpan(0, 16)) && front.Memory.TryRead(b, guest.AsSpan(16, 8)) && front.Memory.TryRead(c, guest.AsSpan(24, 8)), Is.True);

        // poweroff
        front.SendState(VhostUserRequest.SetVringEnable, 0, 0);
        uint stoppedAt = front.GetVringBase(0);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(offered & (VirtioFeatures.Version1 | ProtocolFeaturesBit), Is.EqualTo(VirtioFeatures.Version1 | ProtocolFeaturesBit), "offered VERSION_1 and PROTOCOL_FEATURES");
            Assert.That(offered & RingFeatures, Is.Zero, "the entropy device offers no ring features");
            Assert.That(interrupted, Is.True, "used-buffer notification on the latest call fd");
            Assert.That(reaped.Select(u => u.Length), Is.EqualTo(new uint[] { 16, 16 }), "used lengths");
            Assert.That(guest, Is.EqualTo(fixture.Device.Produced), "the guest received the device's bytes");
            Assert.That(fixture.Device.IndirectChains, Is.EqualTo(1), "one indirect chain");
            Assert.That(fixture.Device.ActivatedFeatures & RingFeatures, Is.EqualTo(RingFeatures), "unasked ring features honoured");
            Assert.That(ring.LoadAvailEvent(), Is.EqualTo(2), "avail_event published after the batch (EVENT_IDX)");
            Assert.That(stoppedAt, Is.EqualTo(2), "GET_VRING_BASE returns the next available index");
            Assert.That(fixture.Device.Resets, Is.EqualTo(1), "the device is reset once its last ring stops");
            Assert.That(FakeFrontEnd.WaitSignalled(call0, 50), Is.False, "a replaced call fd is never signalled");
        }
    }

    [Test]
    public async Task GetProtocolFeatures_DeviceWithoutConfig_OffersMqAndReplyAckOnly()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();

        var protocol = (VhostUserProtocolFeatures)front.GetProtocolFeatures();

        Assert.That(protocol, Is.EqualTo(VhostUserProtocolFeatures.Mq | VhostUserProtocolFeatures.ReplyAck));
    }

    [Test]
    public async Task GetProtocolFeatures_DeviceWithConfig_AlsoOffersConfigAndBackendReq()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice(configSize: 8));
        using FakeFrontEnd front = fixture.Connect();

        var protocol = (VhostUserProtocolFeatures)front.GetProtocolFeatures();

        Assert.That(protocol, Is.EqualTo(VhostUserProtocolFeatures.Mq | VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.Config | VhostUserProtocolFeatures.BackendReq));
    }

    [Test]
    public async Task GetFeatures_DeviceFeatures_OfferedWithVersion1AndProtocolFeatures()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice(deviceFeatures: 1UL | VirtioFeatures.EventIndex));
        using FakeFrontEnd front = fixture.Connect();

        Assert.That(front.GetFeatures(), Is.EqualTo(1UL | VirtioFeatures.EventIndex | VirtioFeatures.Version1 | ProtocolFeaturesBit));
    }

    [Test]
    public async Task GetFeatures_DeviceOffersPackedRings_PackedPassedOnOnlyWhenEnabled_InOrderNever()
    {
        // Packed rings are served when the options enable them (their state travels in
        // SET/GET_VRING_BASE); in-order is not implemented, and offering it would let a front end
        // pick a ring discipline never kept.
        var device = new EntropyTestDevice(deviceFeatures: 1UL | VirtioFeatures.RingFeatures | VirtioFeatures.InOrder);
        ulong byDefault;
        await using (var plain = new BackendFixture(device))
        {
            using FakeFrontEnd first = plain.Connect();
            byDefault = first.GetFeatures();
        }

        await using var fixture = new BackendFixture(new EntropyTestDevice(deviceFeatures: 1UL | VirtioFeatures.RingFeatures | VirtioFeatures.InOrder), new VhostUserBackendOptions { PackedRings = true });
        using FakeFrontEnd front = fixture.Connect();

        ulong offered = front.GetFeatures();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(byDefault & (VirtioFeatures.RingPacked | VirtioFeatures.InOrder), Is.Zero, "split rings only by default");
            Assert.That(offered & VirtioFeatures.RingPacked, Is.EqualTo(VirtioFeatures.RingPacked));
            Assert.That(offered & VirtioFeatures.InOrder, Is.Zero);
            Assert.That(offered & (VirtioFeatures.EventIndex | VirtioFeatures.IndirectDescriptors), Is.EqualTo(VirtioFeatures.EventIndex | VirtioFeatures.IndirectDescriptors));
        }
    }

    [Test]
    public async Task GetQueueNumAndMaxMemSlots_Replies_QueueCountAndEight()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice(queueCount: 2));
        using FakeFrontEnd front = fixture.Connect();

        front.Send(VhostUserRequest.GetQueueNum, []);
        ulong queues = front.ReadU64Reply(VhostUserRequest.GetQueueNum);
        front.Send(VhostUserRequest.GetMaxMemSlots, []);
        ulong slots = front.ReadU64Reply(VhostUserRequest.GetMaxMemSlots);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(queues, Is.EqualTo(2));
            Assert.That(slots, Is.EqualTo(8));
        }
    }

    [Test]
    public async Task ReplyAck_InvalidRingSize_AnsweredWithFailureAndValidOneWithSuccess()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice(maxQueueSize: 64));
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);

        front.SendState(VhostUserRequest.SetVringNum, 0, 3, needReply: true);
        ulong notPowerOfTwo = front.ReadU64Reply(VhostUserRequest.SetVringNum);
        front.SendState(VhostUserRequest.SetVringNum, 0, 128, needReply: true);
        ulong aboveMaximum = front.ReadU64Reply(VhostUserRequest.SetVringNum);
        front.SendState(VhostUserRequest.SetVringNum, 0, 64, needReply: true);
        ulong valid = front.ReadU64Reply(VhostUserRequest.SetVringNum);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(notPowerOfTwo, Is.Not.Zero);
            Assert.That(aboveMaximum, Is.Not.Zero);
            Assert.That(valid, Is.Zero);
            Assert.That(fixture.Statistics.MessagesRejected, Is.EqualTo(2));
        }
    }

    [Test]
    public async Task UnknownRequest_WithNeedReply_AnsweredWithFailureAndConnectionStaysUsable()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);

        front.Send((VhostUserRequest)999, [1, 2, 3], needReply: true);
        ulong status = front.ReadU64Reply((VhostUserRequest)999);
        front.Send(VhostUserRequest.SetLogBase, new byte[16], needReply: true);
        ulong logBase = front.ReadU64Reply(VhostUserRequest.SetLogBase);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(status, Is.Not.Zero);
            Assert.That(logBase, Is.Not.Zero, "an unsupported known request is refused too");
            Assert.That(front.GetFeatures() & VirtioFeatures.Version1, Is.Not.Zero, "the connection still works");
        }
    }

    [Test]
    public async Task MalformedPayloads_EachRefused_NoReplyWithoutNeedReply()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice(queueCount: 2, configSize: 8));
        using FakeFrontEnd front = fixture.Connect();

        front.Send(VhostUserRequest.SetFeatures, [1, 2, 3, 4]);                 // 4 bytes instead of 8
        front.Send(VhostUserRequest.SetVringNum, new byte[12]);                 // wrong size
        front.SendState(VhostUserRequest.SetVringNum, 7, 8);                    // ring index out of range
        front.SendState(VhostUserRequest.SetVringBase, 0, 0x10000);             // base beyond 16 bits
        front.SendState(VhostUserRequest.SetVringEnable, 0, 2);                 // neither 0 nor 1
        front.SendU64(VhostUserRequest.SetVringCall, 0x1_0000_0000);            // reserved bits
        front.SendU64(VhostUserRequest.SetVringKick, 0x100);                    // polling mode
        front.SendU64(VhostUserRequest.SetProtocolFeatures, 1UL << 40);         // not offered
        front.Send(VhostUserRequest.SetMemTable, new byte[4]);                  // shorter than the header
        front.Send(VhostUserRequest.GetConfig, new byte[12 + 300]);             // config too large: an empty reply
        (VhostUserRequest configReply, _, byte[] configPayload) = front.ReadReply();

        // Nothing else expected a reply (no REPLY_ACK negotiated): the next reply is GET_FEATURES'.
        ulong features = front.GetFeatures();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(configReply, Is.EqualTo(VhostUserRequest.GetConfig));
            Assert.That(configPayload, Is.Empty);
            Assert.That(features & VirtioFeatures.Version1, Is.Not.Zero);
            Assert.That(fixture.Statistics.MessagesRejected, Is.EqualTo(10));
        }
    }

    [Test]
    public async Task GetConfig_Malformed_RepliesWithEmptyPayload()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice(configSize: 8));
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.Config);

        byte[] request = new byte[12 + 8];
        BinaryPrimitives.WriteUInt32LittleEndian(request, 4);                    // offset 4 + size 8 > 8 bytes of config
        BinaryPrimitives.WriteUInt32LittleEndian(request.AsSpan(4), 8);
        front.Send(VhostUserRequest.GetConfig, request);
        (VhostUserRequest kind, uint flags, byte[] payload) = front.ReadReply();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(kind, Is.EqualTo(VhostUserRequest.GetConfig));
            Assert.That(flags & VhostUserWire.ReplyFlag, Is.Not.Zero);
            Assert.That(payload, Is.Empty);
        }
    }

    [Test]
    public async Task GetAndSetConfig_DeviceWithConfig_ReadsAndWritesTheDevice()
    {
        var device = new EntropyTestDevice(configSize: 8);
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)(VhostUserProtocolFeatures.Config | VhostUserProtocolFeatures.ReplyAck));

        byte[] get = new byte[12 + 8];
        BinaryPrimitives.WriteUInt32LittleEndian(get.AsSpan(4), 8);
        front.Send(VhostUserRequest.GetConfig, get);
        (_, _, byte[] reply) = front.ReadReply();

        byte[] set = new byte[12 + 2];
        BinaryPrimitives.WriteUInt32LittleEndian(set, 2);
        BinaryPrimitives.WriteUInt32LittleEndian(set.AsSpan(4), 2);
        set[12] = 0x11;
        set[13] = 0x22;
        front.Send(VhostUserRequest.SetConfig, set, needReply: true);
        ulong ack = front.ReadU64Reply(VhostUserRequest.SetConfig);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(reply, Has.Length.EqualTo(20));
            Assert.That(reply.AsSpan(12).ToArray(), Is.EqualTo(new byte[] { 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7 }));
            Assert.That(ack, Is.Zero);
            Assert.That(device.ConfigWrites, Has.Count.EqualTo(1));
            Assert.That(device.ConfigWrites[0].Offset, Is.EqualTo(2));
            Assert.That(device.ConfigWrites[0].Data, Is.EqualTo(new byte[] { 0x11, 0x22 }));
        }
    }

    // Issue 15: with VIRTIO_WDT_F_VCPU_STALL offered the watchdog's configuration is 36 bytes, and
    // QEMU's generic front end (config_size=36) reads and writes all of it: GET_CONFIG of 36 bytes
    // shows vcpu_count and the two stages, a whole-image SET_CONFIG with a new vcpu_heartbeat is one
    // pet, the same image again is none, and a range past 36 bytes is refused.
    [Test]
    public async Task GetAndSetConfig_WatchdogWithVcpuStall_36Bytes_WholeImagePetReachesTheDevice()
    {
        string directory = TestPaths.CreateTempDirectory("vp-vu");
        using var device = new WatchdogDevice(new WatchdogDeviceOptions { VcpuCount = 2, VcpuStallTimeout = TimeSpan.FromSeconds(5) });
        try
        {
            await using var host = new VhostUserBackendHost(device, Path.Combine(directory, "backend.sock"));
            using var front = new FakeFrontEnd(host.SocketPath);
            front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)(VhostUserProtocolFeatures.Config | VhostUserProtocolFeatures.ReplyAck));
            front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1 | VhostUserBackend.ProtocolFeaturesBit | (ulong)WatchdogFeatures.VcpuStall);
            front.SendQemuStyleMemTable();
            front.AttachRing(0, 8, eventIndex: false, out _, out _);
            front.SendState(VhostUserRequest.SetVringEnable, 0, 1);
            _ = front.GetFeatures();

            byte[] get = new byte[12 + 36];
            BinaryPrimitives.WriteUInt32LittleEndian(get.AsSpan(4), 36);
            front.Send(VhostUserRequest.GetConfig, get);
            (_, _, byte[] reply) = front.ReadReply();
            byte[] image = reply.AsSpan(12).ToArray();

            byte[] tooFar = new byte[12 + 4];
            BinaryPrimitives.WriteUInt32LittleEndian(tooFar, 36);
            BinaryPrimitives.WriteUInt32LittleEndian(tooFar.AsSpan(4), 4);
            front.Send(VhostUserRequest.GetConfig, tooFar);
            (_, _, byte[] refused) = front.ReadReply();

            byte[] set = new byte[12 + 36];
            BinaryPrimitives.WriteUInt32LittleEndian(set.AsSpan(4), 36);
            image.CopyTo(set.AsSpan(12));
            BinaryPrimitives.WriteUInt32LittleEndian(set.AsSpan(12 + 0x20), 1u | 1u << 16);   // PET of vCPU 1, sequence 1
            front.Send(VhostUserRequest.SetConfig, set, needReply: true);
            ulong ack = front.ReadU64Reply(VhostUserRequest.SetConfig);
            WatchdogDeviceStatus afterPet = device.GetStatus();
            front.Send(VhostUserRequest.SetConfig, set, needReply: true);                        // the front end's copy again
            ulong ackAgain = front.ReadU64Reply(VhostUserRequest.SetConfig);

            using (Assert.EnterMultipleScope())
            {
                Assert.That(reply, Has.Length.EqualTo(12 + 36));
                Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x14)), Is.EqualTo(2u), "vcpu_count");
                Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x18)), Is.EqualTo(5000u), "vcpu_timeout_ms");
                Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x20)), Is.Zero, "vcpu_heartbeat reads 0");
                Assert.That(refused, Is.Empty, "a range past 36 bytes gets the empty (failed) reply");
                Assert.That(ack, Is.Zero);
                Assert.That(ackAgain, Is.Zero);
                Assert.That(afterPet.NegotiatedFeatures & WatchdogFeatures.VcpuStall, Is.EqualTo(WatchdogFeatures.VcpuStall));
                Assert.That(afterPet.TrackedVcpus, Is.EqualTo(1), "the pet in the image reached the device");
                Assert.That(afterPet.VcpuClock, Is.EqualTo(VcpuClockSource.VmRunTime), "a vhost-user back end has only the VM's run time");
                Assert.That(device.GetStatus().ProtocolErrors, Is.Zero, "neither image was an error");
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task ConfigChange_WithBackendRequestChannel_SendsConfigChangeMessage()
    {
        var device = new EntropyTestDevice(configSize: 8);
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)(VhostUserProtocolFeatures.Config | VhostUserProtocolFeatures.BackendReq | VhostUserProtocolFeatures.ReplyAck));
        (int ours, int theirs) = Interop.LinuxIo.SocketPair();
        try
        {
            front.Send(VhostUserRequest.SetBackendReqFd, [], [theirs], needReply: true);
            ulong ack = front.ReadU64Reply(VhostUserRequest.SetBackendReqFd);
            front.StartRing0(out _, out _);
            device.Context!.SignalConfigChange();

            byte[] header = new byte[12];
            bool arrived = PollRead(ours, header);

            using (Assert.EnterMultipleScope())
            {
                Assert.That(ack, Is.Zero);
                Assert.That(arrived, Is.True, "a message arrived on the back-end channel");
                Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(header), Is.EqualTo((uint)VhostUserBackendRequest.ConfigChangeMsg));
                Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)), Is.EqualTo(VhostUserWire.Version));
            }
        }
        finally
        {
            _ = Interop.LinuxIo.Close(ours);
            _ = Interop.LinuxIo.Close(theirs);
        }
    }

    [Test]
    public async Task ConfigChange_WithoutChannel_IsLoggedNotSent()
    {
        var device = new EntropyTestDevice(configSize: 8);
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        front.StartRing0(out _, out _);

        device.Context!.SignalConfigChange();

        Assert.That(fixture.Host.Logger.Entries.Any(e => e.Id.Id == 16), Is.True, "ConfigChangeNotForwarded logged");
    }

    [Test]
    public async Task SetVringCall_Replaced_SignalsOnlyTheLatest()
    {
        var device = new EntropyTestDevice();
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        SplitRingDriver ring = front.StartRing0(out int kick, out int firstCall);
        int secondCall = front.NewEventFd();
        front.SendU64(VhostUserRequest.SetVringCall, 0, fds: [secondCall]);

        front.PostAndKick(ring, kick, 32);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(FakeFrontEnd.WaitSignalled(secondCall), Is.True, "the latest call fd");
            Assert.That(FakeFrontEnd.WaitSignalled(firstCall, 50), Is.False, "not the replaced one");
        }
    }

    [Test]
    public async Task SetVringKick_BlockingEventFd_IsMadeNonBlocking()
    {
        var device = new EntropyTestDevice();
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        SplitRingDriver ring = front.StartRing0(out _, out int call);
        int blockingKick = Interop.LinuxIo.EventFd(0, Interop.LinuxIo.EfdCloexec);
        try
        {
            front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [blockingKick]);
            // Two wake-ups for one kick would block the loop thread in read() if the back
            // end's copy were blocking; the next request must still be served.
            front.PostAndKick(ring, blockingKick, 16);
            Assert.That(FakeFrontEnd.WaitSignalled(call), Is.True);
            Assert.That(front.GetFeatures() & VirtioFeatures.Version1, Is.Not.Zero, "the loop thread is not stuck");
        }
        finally
        {
            _ = Interop.LinuxIo.Close(blockingKick);
        }
    }

    [Test]
    public async Task GetVringBase_ThenRestartAtBase_ResumesWhereItStopped()
    {
        var device = new EntropyTestDevice();
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        SplitRingDriver ring = front.StartRing0(out int kick, out int call);
        front.PostAndKick(ring, kick, 8);
        Assert.That(FakeFrontEnd.WaitSignalled(call), Is.True);
        Reap(ring);

        front.SendState(VhostUserRequest.SetVringEnable, 0, 0);
        uint stoppedAt = front.GetVringBase(0);

        // Stopped: a kick is not processed.
        front.PostAndKick(ring, kick, 8);
        bool servedWhileStopped = FakeFrontEnd.WaitSignalled(call, 200);

        // Restart as QEMU does: NUM, BASE, ADDR, KICK, ENABLE.
        front.ConfigureRing(0, ring, (ushort)stoppedAt);
        int newKick = front.NewEventFd();
        front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [newKick]);
        front.SendState(VhostUserRequest.SetVringEnable, 0, 1);
        bool servedAfterRestart = FakeFrontEnd.WaitSignalled(call);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stoppedAt, Is.EqualTo(1));
            Assert.That(servedWhileStopped, Is.False, "no processing while stopped");
            Assert.That(servedAfterRestart, Is.True, "the buffer published while stopped is served after the restart");
            Assert.That(device.Chains, Is.EqualTo(2));
            Assert.That(device.Activations, Is.EqualTo(2), "activated again after the stop reset it");
            // A device that keeps no session (IVirtioDevice.Suspend's default) is reset at the stop.
            Assert.That(device.Resets, Is.EqualTo(1));
            Assert.That(device.QueueResets, Is.Zero);
            Assert.That(fixture.Statistics.DeviceSuspensions, Is.Zero);
        }
    }

    // A VM stop: QEMU stops every ring (GET_VRING_BASE) and `cont` restarts each where it stopped.
    [Test]
    public async Task RingStop_ThenRestartWhereItStopped_ResumesTheKeptSession_WithoutAReset()
    {
        var device = new EntropyTestDevice { KeepsSessions = true };
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        SplitRingDriver ring = front.StartRing0(out int kick, out int call);
        front.PostAndKick(ring, kick, 8);
        Assert.That(FakeFrontEnd.WaitSignalled(call), Is.True);
        Reap(ring);

        front.SendState(VhostUserRequest.SetVringEnable, 0, 0);
        uint stoppedAt = front.GetVringBase(0);
        front.PostAndKick(ring, kick, 8);
        bool servedWhileStopped = FakeFrontEnd.WaitSignalled(call, 200);

        front.ConfigureRing(0, ring, (ushort)stoppedAt);
        front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [front.NewEventFd()]);
        front.SendState(VhostUserRequest.SetVringEnable, 0, 1);
        bool servedAfterRestart = FakeFrontEnd.WaitSignalled(call);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stoppedAt, Is.EqualTo(1));
            Assert.That(servedWhileStopped, Is.False);
            Assert.That(servedAfterRestart, Is.True);
            Assert.That(device.Chains, Is.EqualTo(2));
            Assert.That(device.Suspensions, Is.EqualTo(1));
            Assert.That(device.Resumptions, Is.EqualTo(1));
            Assert.That(device.Resets, Is.Zero, "a VM stop is not a driver reset");
            Assert.That(device.Activations, Is.EqualTo(1), "resumed, not activated again");
            Assert.That(fixture.Statistics.DeviceSuspensions, Is.EqualTo(1));
            Assert.That(fixture.Statistics.DeviceResumptions, Is.EqualTo(1));
        }
    }

    // A driver reset: fresh rings from 0, or rings elsewhere: the kept session ends in a reset.
    [TestCase(true, TestName = "RingStop_ThenFreshRingAtZero_ResetsTheDevice_ThenActivates")]
    [TestCase(false, TestName = "RingStop_ThenRingElsewhereAtTheStoppedBase_ResetsTheDevice_ThenActivates")]
    public async Task RingStop_ThenRestartElsewhere_ResetsTheDevice_ThenActivates(bool atZero)
    {
        var device = new EntropyTestDevice { KeepsSessions = true };
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        SplitRingDriver ring = front.StartRing0(out int kick, out int call);
        front.PostAndKick(ring, kick, 8);
        Assert.That(FakeFrontEnd.WaitSignalled(call), Is.True);
        Reap(ring);

        front.SendState(VhostUserRequest.SetVringEnable, 0, 0);
        uint stoppedAt = front.GetVringBase(0);

        SplitRingDriver restarted = front.NewRing(8, eventIndex: false);
        front.ConfigureRing(0, restarted, atZero ? (ushort)0 : (ushort)stoppedAt);
        front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [front.NewEventFd()]);
        front.SendState(VhostUserRequest.SetVringEnable, 0, 1);
        Assert.That(front.GetFeatures(), Is.Not.Zero, "a round trip: the restart is handled");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(device.Suspensions, Is.EqualTo(1));
            Assert.That(device.Resumptions, Is.Zero);
            Assert.That(device.Resets, Is.EqualTo(1));
            Assert.That(device.Activations, Is.EqualTo(2));
            Assert.That(fixture.Statistics.DeviceResumptions, Is.Zero);
        }
    }

    // The front end goes away while the device is suspended: the kept session ends in a reset.
    [Test]
    public async Task RingStop_ThenDisconnect_ResetsTheSuspendedDevice()
    {
        var device = new EntropyTestDevice { KeepsSessions = true };
        await using var fixture = new BackendFixture(device);
        using (FakeFrontEnd front = fixture.Connect())
        {
            SplitRingDriver ring = front.StartRing0(out int kick, out int call);
            front.PostAndKick(ring, kick, 8);
            Assert.That(FakeFrontEnd.WaitSignalled(call), Is.True);
            _ = front.GetVringBase(0);
        }

        Assert.That(SpinWait.SpinUntil(() => device.Resets == 1, TimeSpan.FromSeconds(10)), Is.True, "reset when the front end went away");
        Assert.That(device.Suspensions, Is.EqualTo(1));
    }

    [Test]
    public async Task SetMemTable_WhileRunning_RestartsRingsOnTheNewTable()
    {
        var device = new EntropyTestDevice();
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        SplitRingDriver ring = front.StartRing0(out int kick, out int call);
        front.PostAndKick(ring, kick, 8);
        Assert.That(FakeFrontEnd.WaitSignalled(call), Is.True);
        Reap(ring);

        front.SendQemuStyleMemTable();
        front.PostAndKick(ring, kick, 8);
        bool served = FakeFrontEnd.WaitSignalled(call);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(served, Is.True);
            Assert.That(device.Chains, Is.EqualTo(2));
            Assert.That(device.Activations, Is.EqualTo(2));
            Assert.That(device.Resets, Is.EqualTo(1));
        }
    }

    [Test]
    public async Task SetMemTable_UserModeLinuxTwoSlotTableWithCountOne_AcceptedAndServed()
    {
        // User-Mode Linux (virtio_uml) sends a fixed two-slot table, 72 bytes, with a count of 1:
        // the table is read by its count, the unused slot is ignored.
        var device = new EntropyTestDevice();
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);
        front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1 | VhostUserBackend.ProtocolFeaturesBit);
        front.SendMemTable([(0, FakeFrontEnd.RamSize, 0)], [front.MemFdNumber], needReply: true, slots: 2);
        ulong ack = front.ReadU64Reply(VhostUserRequest.SetMemTable);
        SplitRingDriver ring = front.AttachRing(0, 8, eventIndex: false, out int kick, out int call);
        front.SendState(VhostUserRequest.SetVringEnable, 0, 1);
        front.PostAndKick(ring, kick, 16);
        bool served = FakeFrontEnd.WaitSignalled(call);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ack, Is.Zero, "REPLY_ACK success for the 72-byte table");
            Assert.That(served, Is.True, "the ring in the one counted region is served");
            Assert.That(device.Chains, Is.EqualTo(1));
        }
    }

    [Test]
    public async Task FeaturesWithoutProtocolFeaturesBit_RingsEnabledFromTheStart_KicksServed()
    {
        // Without VHOST_USER_F_PROTOCOL_FEATURES no SET_VRING_ENABLE comes: a ring is enabled when
        // it starts. User-Mode Linux acks such a set when the driver refuses an offered feature.
        var device = new EntropyTestDevice();
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1);
        front.SendQemuStyleMemTable();
        SplitRingDriver ring = front.AttachRing(0, 8, eventIndex: false, out int kick, out int call);
        _ = front.GetFeatures();                           // everything above has been handled
        front.PostAndKick(ring, kick, 16);
        bool served = FakeFrontEnd.WaitSignalled(call);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(device.Activations, Is.EqualTo(1));
            Assert.That(served, Is.True, "a kick on a ring started without SET_VRING_ENABLE is served");
            Assert.That(device.Chains, Is.EqualTo(1));
        }
    }

    [TestCase(0x8000_8000u, TestName = "PackedRing_VringBase_FreshRingBothWrapCountersSet_RoundTrips")]
    [TestCase(0x0003_0005u, TestName = "PackedRing_VringBase_WrappedRingWithTwoOutstanding_RoundTrips")]
    public async Task PackedRing_VringBase(uint value)
    {
        // A packed ring's position: bits 0-14 next available, 15 its wrap counter, 16-30 next
        // used, 31 its wrap counter (QEMU's encoding). It must come back from GET_VRING_BASE as given.
        var device = new EntropyTestDevice(deviceFeatures: VirtioFeatures.RingPacked);
        await using var fixture = new BackendFixture(device, new VhostUserBackendOptions { PackedRings = true });
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1 | VirtioFeatures.RingPacked);
        front.SendQemuStyleMemTable();
        SplitRingDriver layout = front.NewRing(8, eventIndex: false);   // only its addresses are used
        front.ConfigureRing(0, layout);
        front.SendState(VhostUserRequest.SetVringBase, 0, value);
        front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [front.NewEventFd()]);
        _ = front.GetFeatures();
        long activations = device.Activations;

        uint stoppedAt = front.GetVringBase(0);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(activations, Is.EqualTo(1), "the packed ring started");
            Assert.That(stoppedAt, Is.EqualTo(value));
        }
    }

    [Test]
    public async Task SetMemTable_PayloadShorterThanItsCountOrLongerThanTheProtocolMaximum_Refused()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);
        _ = front.GetFeatures();

        // Two regions counted, one slot sent (40 bytes).
        front.SendMemTable([(0, FakeFrontEnd.HoleStart, 0)], [front.MemFdNumber, front.MemFdNumber], needReply: true, countOverride: 2);
        ulong shortTable = front.ReadU64Reply(VhostUserRequest.SetMemTable);
        // One region counted, nine slots sent (296 bytes, above the 8-region maximum of 264).
        front.SendMemTable([(0, FakeFrontEnd.RamSize, 0)], [front.MemFdNumber], needReply: true, slots: 9);
        ulong longTable = front.ReadU64Reply(VhostUserRequest.SetMemTable);
        // Eight slots (264 bytes), one counted: the largest table the protocol allows.
        front.SendMemTable([(0, FakeFrontEnd.RamSize, 0)], [front.MemFdNumber], needReply: true, slots: 8);
        ulong largest = front.ReadU64Reply(VhostUserRequest.SetMemTable);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(shortTable, Is.Not.Zero, "a payload shorter than the regions it counts is refused");
            Assert.That(longTable, Is.Not.Zero, "a payload longer than the protocol's maximum is refused");
            Assert.That(largest, Is.Zero, "eight slots with a count of one are accepted");
            Assert.That(fixture.Host.Logger.Entries.Any(e => e.Message.Contains("expected 72 to 264", StringComparison.Ordinal)), Is.True, "the reason is logged");
        }
    }

    [Test]
    public async Task SetMemTable_FdCountMismatchOrTooManyRegions_RefusedAndDescriptorsClosed()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);
        _ = front.GetFeatures();
        int before = FdCounter.OpenFds();

        front.SendMemTable([(0, 0x100000, 0), (0x100000, 0x100000, 0x100000)], [front.MemFdNumber], needReply: true);
        ulong oneFdForTwo = front.ReadU64Reply(VhostUserRequest.SetMemTable);
        var nine = Enumerable.Range(0, 9).Select(i => ((ulong)i * 0x10000, 0x10000UL, (ulong)i * 0x10000)).ToArray();
        front.SendMemTable(nine, Enumerable.Repeat(front.MemFdNumber, 8).ToArray(), needReply: true, countOverride: 9);
        ulong nineRegions = front.ReadU64Reply(VhostUserRequest.SetMemTable);
        front.SendMemTable([(0, 0x100000, 0x123)], [front.MemFdNumber], needReply: true);
        ulong unalignedOffset = front.ReadU64Reply(VhostUserRequest.SetMemTable);
        front.SendMemTable([(0, 0x100000, 0), (0x80000, 0x100000, 0x80000)], [front.MemFdNumber, front.MemFdNumber], needReply: true);
        ulong overlapping = front.ReadU64Reply(VhostUserRequest.SetMemTable);
        int after = FdCounter.OpenFdsSettled(before);
        // A request with a reply of its own that is refused ends the connection (the front end
        // must not wait for a reply that never comes); the descriptor is closed with it.
        front.Send(VhostUserRequest.GetFeatures, [], [front.MemFdNumber]);
        bool closedOnRefusedGet = front.WaitForClose();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(oneFdForTwo, Is.Not.Zero);
            Assert.That(nineRegions, Is.Not.Zero);
            Assert.That(unalignedOffset, Is.Not.Zero);
            Assert.That(overlapping, Is.Not.Zero);
            Assert.That(closedOnRefusedGet, Is.True, "GET_FEATURES with an unexpected descriptor is refused by closing the connection");
            Assert.That(after, Is.EqualTo(before), "every descriptor that came with a refused message was closed");
        }
    }

    [Test]
    public async Task SetVringAddr_OutsideEveryRegion_RefusedAndRingNeverStarts()
    {
        var device = new EntropyTestDevice();
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);
        front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1 | ProtocolFeaturesBit);
        front.SendQemuStyleMemTable();
        SplitRingDriver ring = front.NewRing(8, eventIndex: false);
        front.SendState(VhostUserRequest.SetVringNum, 0, 8);

        // Guest-physical addresses where front-end virtual ones are expected: not translatable.
        front.SendVringAddr(0, ring.Config.DescriptorArea, ring.Config.DeviceArea, ring.Config.DriverArea, needReply: true);
        ulong physical = front.ReadU64Reply(VhostUserRequest.SetVringAddr);
        // Inside the VGA hole, which no region covers.
        front.SendVringAddr(0, FakeFrontEnd.UserAddress(FakeFrontEnd.HoleStart), FakeFrontEnd.UserAddress(FakeFrontEnd.HoleStart + 0x1000), FakeFrontEnd.UserAddress(FakeFrontEnd.HoleStart + 0x2000), needReply: true);
        ulong hole = front.ReadU64Reply(VhostUserRequest.SetVringAddr);
        front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [front.NewEventFd()]);
        front.SendState(VhostUserRequest.SetVringEnable, 0, 1, needReply: true);
        _ = front.ReadU64Reply(VhostUserRequest.SetVringEnable);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(physical, Is.Not.Zero);
            Assert.That(hole, Is.Not.Zero);
            Assert.That(device.Activations, Is.Zero);
        }
    }

    [Test]
    public async Task SetFeatures_UnofferedPackedRing_Refused()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);

        front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1 | VirtioFeatures.RingPacked, needReply: true);

        Assert.That(front.ReadU64Reply(VhostUserRequest.SetFeatures), Is.Not.Zero);
    }

    [Test]
    public async Task OversizedPayload_DropsTheConnection_AndTheNextOneIsServed()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using (FakeFrontEnd front = fixture.Connect())
        {
            front.Send(VhostUserRequest.SetFeatures, [], sizeOverride: 64 * 1024 * 1024);
            Assert.That(front.WaitForClose(), Is.True, "connection dropped");
        }

        fixture.WaitConnectionsClosed(1);
        using FakeFrontEnd next = fixture.Connect();
        Assert.That(next.GetFeatures() & VirtioFeatures.Version1, Is.Not.Zero);
    }

    [Test]
    public async Task WrongProtocolVersion_DropsTheConnection()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();

        front.Send(VhostUserRequest.GetFeatures, [], flagsOverride: 2);

        Assert.That(front.WaitForClose(), Is.True);
    }

    [Test]
    public async Task Reconnection_FrontEndVanishesWithRingsRunning_NoDescriptorOrMappingLeaks()
    {
        var device = new EntropyTestDevice();
        await using var fixture = new BackendFixture(device);
        // Warm up once so that lazily created runtime descriptors (epoll, pipes) exist before counting.
        using (FakeFrontEnd warm = fixture.Connect())
        {
            _ = warm.GetFeatures();
        }

        fixture.WaitConnectionsClosed(1);
        int fdsBefore = FdCounter.OpenFds();
        int mappingsBefore = FdCounter.MemfdMappings("vp-fake-guest");

        for (int round = 0; round < 3; round++)
        {
            using FakeFrontEnd front = fixture.Connect();
            SplitRingDriver ring = front.StartRing0(out int kick, out int call);
            front.PostAndKick(ring, kick, 16);
            Assert.That(FakeFrontEnd.WaitSignalled(call), Is.True, $"round {round} served");
            front.CloseSocket();
            fixture.WaitConnectionsClosed(2 + round);
        }

        int fdsAfter = FdCounter.OpenFdsSettled(fdsBefore);
        int mappingsAfter = FdCounter.MemfdMappings("vp-fake-guest");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(fdsAfter, Is.EqualTo(fdsBefore), "open descriptors");
            Assert.That(mappingsAfter, Is.EqualTo(mappingsBefore), "guest memory mappings");
            Assert.That(device.Activations, Is.EqualTo(3));
            Assert.That(device.Resets, Is.EqualTo(3), "reset at every disconnect");
            Assert.That(fixture.Statistics.ConnectionsAccepted, Is.EqualTo(4));
        }
    }

    [Test]
    public async Task DeviceNeedsReset_SignalsErrFdAndStopsProcessing()
    {
        var device = new EntropyTestDevice();
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();
        int errFd = front.NewEventFd();
        front.SendU64(VhostUserRequest.SetVringErr, 0, fds: [errFd]);
        SplitRingDriver ring = front.StartRing0(out int kick, out int call);

        device.Context!.SetNeedsReset();
        bool errSignalled = FakeFrontEnd.WaitSignalled(errFd);
        front.PostAndKick(ring, kick, 8);
        bool served = FakeFrontEnd.WaitSignalled(call, 200);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(errSignalled, Is.True);
            Assert.That(served, Is.False);
        }
    }

    [Test]
    public async Task RandomMessages_SeededFuzz_NeverCrashTheBackEnd()
    {
        var device = new EntropyTestDevice(queueCount: 2, configSize: 8);
        await using var fixture = new BackendFixture(device);
        var random = new Random(20261126);
        for (int connection = 0; connection < 20; connection++)
        {
            using FakeFrontEnd front = fixture.Connect();
            for (int i = 0; i < 50; i++)
            {
                byte[] payload = new byte[random.Next(0, 80)];
                random.NextBytes(payload);
                var request = (VhostUserRequest)random.Next(0, 45);
                if (VhostUserSession.RequestHasReply(request))
                {
                    continue;   // these expect a reply the random sender would not read (or, refused, end the connection)
                }

                front.Send(request, payload);
            }

            front.CloseSocket();
            // One front end per socket: the next connects once this one is gone.
            fixture.WaitConnectionsClosed(connection + 1);
        }

        using FakeFrontEnd last = fixture.Connect();
        Assert.That(last.GetFeatures() & VirtioFeatures.Version1, Is.Not.Zero, "still serving after malformed traffic");
    }

    private static void Reap(SplitRingDriver ring)
    {
        while (ring.TryGetUsed(out _) == UsedBufferStatus.Ok)
        {
        }
    }

    private static bool PollRead(int fd, byte[] buffer)
    {
        Span<Interop.LinuxIo.PollFd> fds = [new Interop.LinuxIo.PollFd { Fd = fd, Events = Interop.LinuxIo.PollIn }];
        return Interop.LinuxIo.Poll(fds, 5000) > 0 && Interop.LinuxIo.Read(fd, buffer) == buffer.Length;
    }
}
