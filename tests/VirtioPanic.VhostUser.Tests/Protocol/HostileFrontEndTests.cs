using System.Buffers.Binary;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.VhostUser.Tests.Devices;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser.Tests.Protocol;

// A front end that speaks the protocol but lies: memory past the end of its file, requests that
// expect a reply and are refused, message loops meant to flood the log, connections that hold the
// socket. After each, the back end must still serve a well-behaved front end.
[NonParallelizable]
internal sealed class HostileFrontEndTests
{
    private const ulong Mib = 1024 * 1024;
    private const int FloodMilliseconds = 2000;

    // --- 1. guest memory must lie inside its file ---

    [TestCase(4096UL, 1024 * Mib, 0UL, TestName = "SetMemTable_RegionPastEndOfFile_4KiBMemfdDeclaredAs1GiB_RefusedAndStillServing")]
    [TestCase(0UL, 2 * Mib, 0UL, TestName = "SetMemTable_RegionPastEndOfFile_EmptyMemfdDeclaredAs2MiB_RefusedAndStillServing")]
    [TestCase(4 * Mib, 4096UL, (4 * Mib) + (1024 * Mib), TestName = "SetMemTable_RegionPastEndOfFile_Offset1GiBPastA4MiBMemfd_RefusedAndStillServing")]
    [TestCase(4 * Mib, 4 * Mib, 4096UL, TestName = "SetMemTable_RegionPastEndOfFile_OneExtraPage_RefusedAndStillServing")]
    public async Task SetMemTable_RegionPastEndOfFile(ulong fileSize, ulong declaredSize, ulong offset)
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        int memfd = NewMemFd(fileSize, seal: false);
        try
        {
            using (FakeFrontEnd front = fixture.Connect())
            {
                front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);
                front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1);
                front.SendMemTable([(0, declaredSize, offset)], [memfd], needReply: true);
                ulong ack = front.ReadU64Reply(VhostUserRequest.SetMemTable);

                // The ring would live in that memory: before the fix, the first access (the used
                // index read when the ring starts) killed the process with SIGBUS.
                SplitRingDriver ring = front.NewRing(8, eventIndex: false);
                front.ConfigureRing(0, ring);
                int kick = front.NewEventFd();
                front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [kick]);

                using (Assert.EnterMultipleScope())
                {
                    Assert.That(ack, Is.Not.Zero, "REPLY_ACK failure for the table");
                    Assert.That(fixture.Host.Logger.Entries.Any(e => e.Message.Contains("beyond the end of its", StringComparison.Ordinal)), Is.True, "the reason is logged");
                    Assert.That(front.GetFeatures() & VirtioFeatures.Version1, Is.Not.Zero, "the connection still works");
                    Assert.That(fixture.Device.Activations, Is.Zero, "no ring started on the refused table");
                }
            }

            fixture.WaitConnectionsClosed(1);
            AssertServesWellBehavedFrontEnd(fixture);
        }
        finally
        {
            _ = LinuxIo.Close(memfd);
        }
    }

    [Test]
    public async Task SetMemTable_UnsealedFile_AcceptedWithOneWarningPerConnection()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);

        front.SendQemuStyleMemTable(needReply: true);
        ulong first = front.ReadU64Reply(VhostUserRequest.SetMemTable);
        front.SendQemuStyleMemTable(needReply: true);
        ulong second = front.ReadU64Reply(VhostUserRequest.SetMemTable);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(first, Is.Zero);
            Assert.That(second, Is.Zero);
            Assert.That(fixture.Host.Logger.Entries.Count(e => e.Id.Id == 25), Is.EqualTo(1), "one unsealed-memory warning for the connection");
        }
    }

    [Test]
    public async Task SetMemTable_RequireSealedMemory_RefusesUnsealedAcceptsShrinkSealedMemfd()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice(), new VhostUserBackendOptions { RequireSealedMemory = true });
        int unsealed = NewMemFd(4 * Mib, seal: false);
        int sealedFd = NewMemFd(4 * Mib, seal: true);
        try
        {
            using FakeFrontEnd front = fixture.Connect();
            front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);
            front.SendMemTable([(0, 4 * Mib, 0)], [unsealed], needReply: true);
            ulong refused = front.ReadU64Reply(VhostUserRequest.SetMemTable);
            front.SendMemTable([(0, 4 * Mib, 0)], [sealedFd], needReply: true);
            ulong accepted = front.ReadU64Reply(VhostUserRequest.SetMemTable);

            using (Assert.EnterMultipleScope())
            {
                Assert.That(refused, Is.Not.Zero, "an unsealed memfd is refused");
                Assert.That(accepted, Is.Zero, "a memfd sealed with F_SEAL_SHRINK is accepted");
                Assert.That(fixture.Host.Logger.Entries.Any(e => e.Message.Contains("F_SEAL_SHRINK", StringComparison.Ordinal) && e.Message.Contains("RequireSealedMemory", StringComparison.Ordinal)), Is.True);
            }
        }
        finally
        {
            _ = LinuxIo.Close(unsealed);
            _ = LinuxIo.Close(sealedFd);
        }
    }

    [Test]
    public async Task SetMemTable_NotARegularFile_Refused()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);
        int eventFd = front.NewEventFd();

        front.SendMemTable([(0, 4096, 0)], [eventFd], needReply: true);

        Assert.That(front.ReadU64Reply(VhostUserRequest.SetMemTable), Is.Not.Zero);
    }

    // --- 2. a refused request that expects a reply never leaves the front end waiting ---

    private static IEnumerable<TestCaseData> RefusedRepliedRequests()
    {
        byte[] eight = new byte[8];
        byte[] badIndex = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(badIndex, 7);
        yield return new TestCaseData(VhostUserRequest.GetFeatures, Array.Empty<byte>(), 1).SetName("GetFeatures_WithADescriptor_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetFeatures, eight, 0).SetName("GetFeatures_WithAPayload_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetProtocolFeatures, Array.Empty<byte>(), 1).SetName("GetProtocolFeatures_WithADescriptor_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetProtocolFeatures, eight, 0).SetName("GetProtocolFeatures_WithAPayload_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetQueueNum, eight, 0).SetName("GetQueueNum_WithAPayload_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetQueueNum, Array.Empty<byte>(), 2).SetName("GetQueueNum_WithDescriptors_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetMaxMemSlots, eight, 0).SetName("GetMaxMemSlots_WithAPayload_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetMaxMemSlots, Array.Empty<byte>(), 1).SetName("GetMaxMemSlots_WithADescriptor_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetVringBase, badIndex, 0).SetName("GetVringBase_BadRingIndex_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetVringBase, new byte[4], 0).SetName("GetVringBase_ShortPayload_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetVringBase, eight, 1).SetName("GetVringBase_WithADescriptor_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetFeatures, Array.Empty<byte>(), 9).SetName("GetFeatures_NineDescriptors_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetVringBase, eight, 12).SetName("GetVringBase_TwelveDescriptors_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetConfig, new byte[12], 9).SetName("GetConfig_NineDescriptors_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetInflightFd, new byte[16], 0).SetName("GetInflightFd_NotOffered_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.GetStatus, Array.Empty<byte>(), 0).SetName("GetStatus_NotOffered_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.PostcopyAdvise, Array.Empty<byte>(), 0).SetName("PostcopyAdvise_NotOffered_AnsweredOrClosed");
        yield return new TestCaseData(VhostUserRequest.CheckDeviceState, Array.Empty<byte>(), 0).SetName("CheckDeviceState_NotOffered_AnsweredOrClosed");
    }

    [TestCaseSource(nameof(RefusedRepliedRequests))]
    public async Task RefusedRequestWithAReply(VhostUserRequest request, byte[] payload, int fdCount)
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice(configSize: 8));
        using (FakeFrontEnd front = fixture.Connect())
        {
            front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)(VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.Config));
            int[] fds = Enumerable.Range(0, fdCount).Select(_ => front.NewEventFd()).ToArray();
            front.Send(request, payload, fds);

            // Whatever comes back (a reply of the request's kind, or the end of the stream), it
            // comes within the front end's timeout: the front end is never left waiting.
            Assert.That(ReplyOrClose(front, request), Is.True, $"{request} was neither answered nor the connection closed");
        }

        fixture.WaitConnectionsClosed(1);
        AssertServesWellBehavedFrontEnd(fixture);
    }

    // --- 3. a front end cannot flood the log ---

    [Test]
    public async Task Flood_SetVringKickOnARingThatCannotStart_LogBounded()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        long sent = 0;
        using (FakeFrontEnd front = fixture.Connect())
        {
            front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1);
            front.SendState(VhostUserRequest.SetVringNum, 0, 8);
            front.SendVringAddr(0, 0xdead_0000_0000, 0xdead_0000_1000, 0xdead_0000_2000);   // in no region
            front.SendQemuStyleMemTable();
            int kick = front.NewEventFd();
            sent = Repeat(() => front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [kick]));
            _ = front.GetFeatures();
        }

        AssertLogBounded(fixture, sent, nameof(VhostUserLog.RingStartFailed));
    }

    [Test]
    public async Task Flood_SetMemTableWithRunningRing_LogBounded()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        long sent = 0;
        using (FakeFrontEnd front = fixture.Connect())
        {
            front.StartRing0(out _, out _);
            sent = Repeat(() => front.SendQemuStyleMemTable());
            _ = front.GetFeatures();
        }

        AssertLogBounded(fixture, sent, nameof(VhostUserLog.DeviceReset));
    }

    [Test]
    public async Task Flood_SetFeatures_LogBounded()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        long sent = 0;
        using (FakeFrontEnd front = fixture.Connect())
        {
            sent = Repeat(() => front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1 | VirtioFeatures.EventIndex));
            _ = front.GetFeatures();
        }

        AssertLogBounded(fixture, sent, nameof(VhostUserLog.FeaturesNegotiated));
    }

    [Test]
    public async Task Flood_MalformedRequests_LogBounded()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        long sent = 0;
        using (FakeFrontEnd front = fixture.Connect())
        {
            sent = Repeat(() => front.SendState(VhostUserRequest.SetVringNum, 0, 3));
            _ = front.GetFeatures();
        }

        AssertLogBounded(fixture, sent, nameof(VhostUserLog.MessageRejected));
    }

    [Test]
    public async Task Flood_ConnectCloseLoop_LogBounded()
    {
        // A short window, so that the loop spans several and the per-back-end summary appears
        // with the first line of each new window.
        var window = TimeSpan.FromMilliseconds(500);
        await using var fixture = new BackendFixture(new EntropyTestDevice(), new VhostUserBackendOptions { LogWindow = window });
        long connections = 0;
        var clock = Stopwatch.StartNew();
        while (clock.ElapsedMilliseconds < FloodMilliseconds)
        {
            using (FakeFrontEnd front = fixture.Connect())
            {
                front.Send(VhostUserRequest.SetOwner, []);
            }

            connections++;
            fixture.WaitConnectionsClosed(connections);
        }

        int windows = (int)(clock.ElapsedMilliseconds / window.TotalMilliseconds) + 2;
        AssertLogBounded(fixture, connections, nameof(VhostUserLog.Connected), minimumSent: 50, windows: windows);
    }

    // --- 4. connections: one front end per socket, told; set-up bounded in time ---

    [Test]
    public async Task SecondConnection_WhileOneIsServed_ClosedAndLoggedAndTheFirstKeepsWorking()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd first = fixture.Connect();
        first.Send(VhostUserRequest.SetOwner, []);
        _ = first.GetFeatures();

        bool secondClosed;
        using (FakeFrontEnd second = fixture.Connect())
        {
            secondClosed = second.WaitForClose();
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(secondClosed, Is.True, "the second connection is closed, not queued");
            Assert.That(fixture.Statistics.ConnectionsRefused, Is.EqualTo(1));
            Assert.That(fixture.Host.Logger.Entries.Any(e => e.Id.Id == 24), Is.True, "the refusal is logged");
            Assert.That(first.GetFeatures() & VirtioFeatures.Version1, Is.Not.Zero, "the first front end is still served");
        }
    }

    [Test]
    public async Task IdleConnection_NoSetupWithinTheTimeout_ClosedAndTheNextIsServed()
    {
        var options = new VhostUserBackendOptions { SetupTimeout = TimeSpan.FromMilliseconds(300) };
        await using var fixture = new BackendFixture(new EntropyTestDevice(), options);
        bool closed;
        using (FakeFrontEnd idle = fixture.Connect())
        {
            closed = idle.WaitForClose();
        }

        fixture.WaitConnectionsClosed(1);
        using FakeFrontEnd next = fixture.Connect();
        next.Send(VhostUserRequest.SetOwner, []);
        Thread.Sleep(700);   // past the set-up timeout: set up, the connection may idle

        using (Assert.EnterMultipleScope())
        {
            Assert.That(closed, Is.True, "a connection that never sets up is closed");
            Assert.That(fixture.Host.Logger.Entries.Any(e => e.Id.Id == 5 && e.Message.Contains("SET_OWNER", StringComparison.Ordinal)), Is.True, "with a logged reason");
            Assert.That(next.GetFeatures() & VirtioFeatures.Version1, Is.Not.Zero, "a set-up connection is not timed out");
        }
    }

    [Test]
    public void SetupTimeout_OutOfRange_Throws()
    {
        using (Assert.EnterMultipleScope())
        {
            Assert.That(() => new VhostUserBackendOptions { SetupTimeout = TimeSpan.Zero }, Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => new VhostUserBackendOptions { SetupTimeout = TimeSpan.FromDays(2) }, Throws.InstanceOf<ArgumentOutOfRangeException>());
        }
    }

    // --- helpers ---

    // A full QEMU-like set-up on a new connection, one chain served.
    private static void AssertServesWellBehavedFrontEnd(BackendFixture fixture)
    {
        using FakeFrontEnd front = fixture.Connect();
        front.Send(VhostUserRequest.SetOwner, []);
        SplitRingDriver ring = front.StartRing0(out int kick, out int call);
        front.PostAndKick(ring, kick, 16);
        Assert.That(FakeFrontEnd.WaitSignalled(call), Is.True, "a well-behaved front end is served afterwards");
    }

    private static int NewMemFd(ulong size, bool seal)
    {
        int fd = LinuxIo.MemFdCreate("vp-hostile", LinuxIo.MfdCloexec | (seal ? LinuxIo.MfdAllowSealing : 0));
        Assert.That(fd, Is.GreaterThanOrEqualTo(0), "memfd_create");
        Assert.That(LinuxIo.FTruncate(fd, (long)size), Is.Zero, "ftruncate");
        if (seal)
        {
            Assert.That(LinuxIo.AddSeals(fd, LinuxIo.SealShrink | LinuxIo.SealGrow | LinuxIo.SealSeal), Is.Zero, "F_ADD_SEALS");
        }

        return fd;
    }

    private static bool ReplyOrClose(FakeFrontEnd front, VhostUserRequest request)
    {
        try
        {
            (VhostUserRequest kind, _, _) = front.ReadReply();
            return kind == request;
        }
        catch (IOException)
        {
            return true;    // end of stream: closed
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private static long Repeat(Action send)
    {
        long count = 0;
        var clock = Stopwatch.StartNew();
        while (clock.ElapsedMilliseconds < FloodMilliseconds)
        {
            send();
            count++;
        }

        return count;
    }

    // Lines at Debug and above (Trace, one per message, is for deliberate protocol debugging and
    // off by default) stay within the back end's per-kind burst, and what was swallowed is summarised.
    private static void AssertLogBounded(BackendFixture fixture, long sent, string floodedKind, long minimumSent = 1000, int windows = 1)
    {
        fixture.WaitConnectionsClosed(fixture.Statistics.ConnectionsAccepted);
        var lines = fixture.Host.Logger.Entries.Where(e => e.Level >= LogLevel.Debug).ToList();
        var perKind = lines.GroupBy(e => e.Id.Id).ToDictionary(g => g.Key, g => g.Count());
        string summary = string.Join(", ", perKind.Select(p => $"{VhostUserLog.KindOf(p.Key)}={p.Value}"));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(sent, Is.GreaterThanOrEqualTo(minimumSent), "the loop really repeated the message");
            Assert.That(perKind.Where(p => p.Key != VhostUserLog.SuppressedId).Select(p => p.Value), Has.All.LessThanOrEqualTo(VhostUserBackend.LogBurstPerBackend * windows), summary);
            Assert.That(lines, Has.Count.LessThanOrEqualTo(200 * windows), summary);
            Assert.That(lines.Any(e => e.Id.Id == VhostUserLog.SuppressedId && e.Message.Contains(floodedKind, StringComparison.Ordinal)), Is.True, $"a summary of the suppressed {floodedKind} lines ({summary})");
        }
    }
}
