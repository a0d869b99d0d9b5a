using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.VhostUser.Loop;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.VhostUser.Tests.Devices;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser.Tests.Protocol;

// Every back end in the process is served by one event loop (Loop/VhostUserEventLoop.cs): many
// back ends at once, a front end that stalls mid-message or never reads its replies must not
// delay the others and is dropped at its own deadline, stale events of closed (and reused)
// descriptors go nowhere, a back end can be stopped mid-message, and a device that throws does
// not stop the loop.
[NonParallelizable]
internal sealed class EventLoopTests
{
    private const string LoopThreadName = "VirtioPanic vhost-user";

    public enum Stall
    {
        HalfHeader,
        HalfPayload,
        NeverReadsReplies,
    }

    [Test]
    public async Task FiftyBackEnds_ServedAtOnceByTheOneLoopThread()
    {
        const int Count = 50;
        var fixtures = new List<BackendFixture>();
        var fronts = new List<FakeFrontEnd>();
        try
        {
            for (int i = 0; i < Count; i++)
            {
                fixtures.Add(new BackendFixture(new EntropyTestDevice()));
            }

            // Every front end connects and sets up before any is served a chain: 50 sessions open at once.
            var rings = new (SplitRingDriver Ring, int Kick, int Call)[Count];
            for (int i = 0; i < Count; i++)
            {
                FakeFrontEnd front = fixtures[i].Connect();
                fronts.Add(front);
                front.Send(VhostUserRequest.SetOwner, []);
                SplitRingDriver ring = front.StartRing0(out int kick, out int call);
                rings[i] = (ring, kick, call);
            }

            for (int i = 0; i < Count; i++)
            {
                fronts[i].PostAndKick(rings[i].Ring, rings[i].Kick, 16);
            }

            bool[] served = [.. rings.Select(r => FakeFrontEnd.WaitSignalled(r.Call))];
            using (Assert.EnterMultipleScope())
            {
                Assert.That(served, Has.All.True, "every session's chain was served");
                Assert.That(fixtures.Select(f => f.Device.Chains), Has.All.EqualTo(1));
                Assert.That(fixtures.Select(f => f.Statistics.ConnectionsAccepted), Has.All.EqualTo(1));
                Assert.That(fixtures.Select(f => f.Device.NotifyThreadName).Distinct(), Is.EqualTo(new[] { LoopThreadName }), "every device was notified on the one loop thread");
                Assert.That(fixtures.Select(f => f.Statistics.ConnectionsRefused), Has.All.Zero);
            }
        }
        finally
        {
            foreach (FakeFrontEnd front in fronts)
            {
                front.Dispose();
            }

            foreach (BackendFixture fixture in fixtures)
            {
                await fixture.DisposeAsync();
            }
        }
    }

    [TestCase(Stall.HalfHeader)]
    [TestCase(Stall.HalfPayload)]
    [TestCase(Stall.NeverReadsReplies)]
    public async Task StalledFrontEnd_DoesNotDelayAnotherSession(Stall stall)
    {
        // The stalled connection's I/O timeout is a day: it stays open for the whole test.
        await using var stalledFixture = new BackendFixture(new EntropyTestDevice(), new VhostUserBackendOptions { IoTimeout = TimeSpan.FromDays(1) });
        await using var otherFixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd stalled = stalledFixture.Connect();
        StallMidway(stalled, stall);

        using FakeFrontEnd other = otherFixture.Connect();
        other.Send(VhostUserRequest.SetOwner, []);
        ulong features = other.GetFeatures();
        SplitRingDriver ring = other.StartRing0(out int kick, out int call);
        other.PostAndKick(ring, kick, 16);
        bool served = FakeFrontEnd.WaitSignalled(call);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(features & VirtioFeatures.Version1, Is.Not.Zero, "the other session's request was answered");
            Assert.That(served, Is.True, "the other session's chain was served");
            Assert.That(stalledFixture.Statistics.ConnectionsAccepted, Is.EqualTo(1), "the stalled connection was accepted");
            Assert.That(stalledFixture.Statistics.ConnectionsClosed, Is.Zero, "and is still open");
        }
    }

    [TestCase(Stall.HalfHeader, "incomplete message")]
    [TestCase(Stall.HalfPayload, "incomplete message")]
    [TestCase(Stall.NeverReadsReplies, "did not read a reply")]
    public async Task StalledFrontEnd_DroppedAtItsIoDeadline_AndTheNextIsServed(Stall stall, string reason)
    {
        var options = new VhostUserBackendOptions { IoTimeout = TimeSpan.FromMilliseconds(300) };
        await using var fixture = new BackendFixture(new EntropyTestDevice(), options);
        using (FakeFrontEnd stalled = fixture.Connect())
        {
            StallMidway(stalled, stall);

            // Not read from meanwhile: reading would un-stall a front end that never reads.
            fixture.WaitConnectionsClosed(1);
        }

        using FakeFrontEnd next = fixture.Connect();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(fixture.Host.Logger.Entries.Any(e => e.Id.Id == 5 && e.Message.Contains(reason, StringComparison.Ordinal)), Is.True, $"dropped with the reason '{reason}'");
            Assert.That(next.GetFeatures() & VirtioFeatures.Version1, Is.Not.Zero, "the next connection is served");
        }
    }

    [Test]
    public async Task KickEventFdReplaced_OldOneNoLongerKicks_AndTheNewOneDoes()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();
        SplitRingDriver ring = front.StartRing0(out int oldKick, out int call);
        front.PostAndKick(ring, oldKick, 16);
        Assert.That(FakeFrontEnd.WaitSignalled(call), Is.True, "served on the first kick eventfd");

        // A new kick eventfd: the back end closes its copy of the old one (the front end keeps
        // its own, so the eventfd itself lives on: epoll would keep reporting it had the back end
        // not removed it first); then a new call eventfd, which the back end receives into the
        // lowest free number, typically the one just closed.
        int newKick = front.NewEventFd();
        front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [newKick]);
        int newCall = front.NewEventFd();
        front.SendU64(VhostUserRequest.SetVringCall, 0, fds: [newCall]);
        _ = front.GetFeatures();
        long kicksBefore = fixture.Statistics.Kicks;

        FakeFrontEnd.Signal(oldKick);
        front.PostAndKick(ring, newKick, 16);
        bool served = WaitUntil(() => fixture.Device.Chains == 2);
        _ = front.GetFeatures();   // a later turn: any kick of the turn that served the chain is counted by now

        using (Assert.EnterMultipleScope())
        {
            Assert.That(served, Is.True, "served on the new kick eventfd");
            Assert.That(fixture.Statistics.Kicks, Is.EqualTo(kicksBefore + 1), "one kick: the replaced eventfd kicks nothing");
        }
    }

    [Test]
    public async Task KickAfterABurstOfMessages_ServedAfterThemAll_InTheNewSetUp()
    {
        await using var fixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd front = fixture.Connect();
        SplitRingDriver ring = front.StartRing0(out int kick, out int oldCall);

        // Two turns' worth of messages (16 are read per readiness event), the last of which
        // replaces the call eventfd, then at once a kick: it must be served after all of them.
        for (int i = 0; i < 31; i++)
        {
            front.SendU64(VhostUserRequest.SetProtocolFeatures, 0);
        }

        int newCall = front.NewEventFd();
        front.SendU64(VhostUserRequest.SetVringCall, 0, fds: [newCall]);
        front.PostAndKick(ring, kick, 16);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(FakeFrontEnd.WaitSignalled(newCall), Is.True, "the kick was served, after the message that replaced the call eventfd");
            Assert.That(FakeFrontEnd.WaitSignalled(oldCall, 50), Is.False, "not in the old set-up");
            Assert.That(fixture.Statistics.MessagesHandled, Is.GreaterThanOrEqualTo(32 + 8));
        }
    }

    [Test]
    public async Task FloodingFrontEnd_DoesNotStarveAnotherSession()
    {
        await using var floodedFixture = new BackendFixture(new EntropyTestDevice());
        await using var otherFixture = new BackendFixture(new EntropyTestDevice());
        using FakeFrontEnd flooder = floodedFixture.Connect();
        flooder.Send(VhostUserRequest.SetOwner, []);
        _ = flooder.GetFeatures();
        using var stop = new CancellationTokenSource();
        long sent = 0;
        // 2048 messages without a reply per send: the back end needs a recvmsg for each, the
        // flooder one send for them all, so the socket never runs dry while the flood lasts.
        const int PerSend = 2048;
        const int MessageSize = VhostUserWire.HeaderSize + 8;
        byte[] burst = new byte[PerSend * MessageSize];
        for (int i = 0; i < PerSend; i++)
        {
            VhostUserWire.WriteHeader(burst.AsSpan(i * MessageSize), (uint)VhostUserRequest.SetProtocolFeatures, VhostUserWire.Version, 8);
        }

        Task flood = Task.Factory.StartNew(
            () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    flooder.SendRaw(burst);
                    Interlocked.Add(ref sent, PerSend);
                }
            },
            TaskCreationOptions.LongRunning);
        try
        {
            Assert.That(WaitUntil(() => Interlocked.Read(ref sent) > 20_000), Is.True, "the flood is under way");
            using FakeFrontEnd other = otherFixture.Connect();
            other.Send(VhostUserRequest.SetOwner, []);
            SplitRingDriver ring = other.StartRing0(out int kick, out int call);
            other.PostAndKick(ring, kick, 16);
            bool served = FakeFrontEnd.WaitSignalled(call);
            bool stillFlooding = !flood.IsCompleted;

            using (Assert.EnterMultipleScope())
            {
                Assert.That(served, Is.True, "the other session's requests were answered and its chain served during the flood");
                Assert.That(stillFlooding, Is.True, "while the flood went on");
            }
        }
        finally
        {
            await stop.CancelAsync();
            await flood.WaitAsync(TimeSpan.FromSeconds(10));
        }

        Assert.That(floodedFixture.Statistics.MessagesHandled, Is.GreaterThan(10_000), "the flooded back end handled the flood meanwhile");
    }

    [Test]
    public void StaleEvent_OfADescriptorClosedAndReusedInTheSameBatch_IsDropped()
    {
        VhostUserEventLoop loop = VhostUserEventLoop.Shared;
        using var done = new ManualResetEventSlim();
        var probe = new SwapProbe(loop, done);
        loop.Post(static p => ((SwapProbe)p!).Arm(), probe);
        Assert.That(done.Wait(TimeSpan.FromSeconds(10)), Is.True, "the probe ran");
        // Give the loop a turn after the swap: a stale event would have been dispatched by now.
        using var turn = new ManualResetEventSlim();
        loop.Post(static t => ((ManualResetEventSlim)t!).Set(), turn);
        Assert.That(turn.Wait(TimeSpan.FromSeconds(10)), Is.True);
        using var check = new ManualResetEventSlim();
        loop.Post(static c => ((ManualResetEventSlim)c!).Set(), check);
        Assert.That(check.Wait(TimeSpan.FromSeconds(10)), Is.True);

        loop.Post(static p => ((SwapProbe)p!).Disarm(), probe);
        using var disarmed = new ManualResetEventSlim();
        loop.Post(static d => ((ManualResetEventSlim)d!).Set(), disarmed);
        Assert.That(disarmed.Wait(TimeSpan.FromSeconds(10)), Is.True);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(probe.Swaps, Is.EqualTo(1), "exactly one of the two handlers ran and swapped out the other");
            Assert.That(probe.SwappedOutCalls, Is.Zero, "the removed registration got no event");
            Assert.That(probe.ReplacementCalls, Is.Zero, "the new registration on the (typically reused) number got no event: it was never signalled");
        }

        // Number reuse is the kernel's choice (usually yes); the token makes the outcome the same either way.
        TestContext.Out.WriteLine($"the replacement reused the closed descriptor's number: {probe.Reused}");
    }

    [Test]
    public async Task BackEndDisposed_WhileItsSessionIsMidMessage_ClosesTheConnection_AndCancellationStillEndsRunAsync()
    {
        string directory = RealKernel.TestPaths.CreateTempDirectory("vp-vu");
        string socket = Path.Combine(directory, "backend.sock");
        var device = new EntropyTestDevice();
        var logger = new TestLogger();
        using var stop = new CancellationTokenSource();
        var backend = new VhostUserBackend(device, socket, logger, new VhostUserBackendOptions { IoTimeout = TimeSpan.FromDays(1) });
        Task run = backend.RunAsync(stop.Token);
        try
        {
            bool closed;
            using (var front = new FakeFrontEnd(socket))
            {
                front.Send(VhostUserRequest.SetOwner, []);
                _ = front.GetFeatures();
                front.SendRaw([1, 0, 0, 0, 1]);   // five bytes of a header, then nothing
                backend.Dispose();
                closed = front.WaitForClose();
            }

            await stop.CancelAsync();
            bool ended = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(10))) == run;

            using (Assert.EnterMultipleScope())
            {
                Assert.That(closed, Is.True, "Dispose ended the connection in the middle of its message");
                Assert.That(backend.Statistics.ConnectionsClosed, Is.EqualTo(1));
                Assert.That(logger.Entries.Any(e => e.Id.Id == 3 && e.Message.Contains("back end stopping", StringComparison.Ordinal)), Is.True, "with the reason logged");
                Assert.That(ended, Is.True, "RunAsync completed when cancelled");
                Assert.That(File.Exists(socket), Is.False, "the socket file is removed");
            }
        }
        finally
        {
            stop.Cancel();
            await run.WaitAsync(TimeSpan.FromSeconds(10));
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task DeviceThrowsFromNotify_LoopSurvives_OtherBackEndsAndTheNextConnectionAreServed()
    {
        var faulty = new EntropyTestDevice();
        await using var faultyFixture = new BackendFixture(faulty);
        await using var otherFixture = new BackendFixture(new EntropyTestDevice());
        using (FakeFrontEnd front = faultyFixture.Connect())
        {
            int err = front.NewEventFd();
            front.SendU64(VhostUserRequest.SetVringErr, 0, fds: [err]);
            SplitRingDriver ring = front.StartRing0(out int kick, out _);
            faulty.ThrowOnNotify = true;
            front.PostAndKick(ring, kick, 16);
            Assert.That(FakeFrontEnd.WaitSignalled(err), Is.True, "the fault makes the device need a reset (err eventfd)");
        }

        faulty.ThrowOnNotify = false;
        using FakeFrontEnd other = otherFixture.Connect();
        SplitRingDriver otherRing = other.StartRing0(out int otherKick, out int otherCall);
        other.PostAndKick(otherRing, otherKick, 16);
        bool otherServed = FakeFrontEnd.WaitSignalled(otherCall);

        faultyFixture.WaitConnectionsClosed(1);
        using FakeFrontEnd again = faultyFixture.Connect();
        SplitRingDriver againRing = again.StartRing0(out int againKick, out int againCall);
        again.PostAndKick(againRing, againKick, 16);
        bool againServed = FakeFrontEnd.WaitSignalled(againCall);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(faultyFixture.Host.Logger.Entries.Any(e => e.Id.Id == 17), Is.True, "the device fault is logged");
            Assert.That(otherServed, Is.True, "another back end is served after the fault");
            Assert.That(againServed, Is.True, "the faulty device's back end serves its next connection");
        }
    }

    private static bool WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition() && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(5);
        }

        return condition();
    }

    // Leaves the connection stuck: half a header, a header and half its payload, or requests whose
    // replies are never read until the socket buffers are full.
    private static void StallMidway(FakeFrontEnd front, Stall stall)
    {
        front.Send(VhostUserRequest.SetOwner, []);
        _ = front.GetFeatures();
        switch (stall)
        {
            case Stall.HalfHeader:
                front.SendRaw([(byte)VhostUserRequest.GetFeatures, 0, 0, 0, 1, 0]);
                break;
            case Stall.HalfPayload:
                byte[] message = new byte[VhostUserWire.HeaderSize + 3];
                VhostUserWire.WriteHeader(message, (uint)VhostUserRequest.SetFeatures, VhostUserWire.Version, 8);
                front.SendRaw(message);
                break;
            default:
                byte[] request = new byte[VhostUserWire.HeaderSize];
                VhostUserWire.WriteHeader(request, (uint)VhostUserRequest.GetFeatures, VhostUserWire.Version, 0);
                // Until the back end stops reading: its replies fill its send buffer (we never
                // read them), a reply waits, and then our own send buffer fills and stays full.
                // Bounded: at most 10 s of trying.
                var clock = System.Diagnostics.Stopwatch.StartNew();
                long fullSince = -1;
                while (clock.ElapsedMilliseconds < 10_000)
                {
                    if (LinuxIo.SendWithFds(front.SocketFd, request, [], dontWait: true) > 0)
                    {
                        fullSince = -1;
                        continue;
                    }

                    fullSince = fullSince < 0 ? clock.ElapsedMilliseconds : fullSince;
                    if (clock.ElapsedMilliseconds - fullSince > 200)
                    {
                        break;
                    }

                    Thread.Sleep(10);
                }

                break;
        }
    }

    // Two signalled eventfds registered on the loop; whichever handler runs first removes the
    // other's registration, closes it, opens a new eventfd (the kernel hands out the lowest free
    // number: usually the one just closed) and registers it, unsignalled, with a third handler.
    // If the loop dispatched by descriptor number, the other's event, still in the same batch,
    // would reach the third handler.
    private sealed class SwapProbe(VhostUserEventLoop loop, ManualResetEventSlim done)
    {
        private readonly Handler[] _handlers = new Handler[3];
        private readonly int[] _fds = new int[3];
        private readonly ulong[] _tokens = new ulong[3];

        internal int Swaps { get; private set; }

        internal int SwappedOutCalls { get; private set; }

        internal int ReplacementCalls { get; private set; }

        internal bool Reused { get; private set; }

        private int SwappedOut { get; set; } = -1;

        internal void Arm()
        {
            for (int i = 0; i < 2; i++)
            {
                _fds[i] = LinuxIo.EventFd(1, LinuxIo.EfdCloexec | LinuxIo.EfdNonblock);
                _handlers[i] = new Handler(this, i);
                Assert.That(loop.Register(_fds[i], LinuxIo.EpollIn, _handlers[i], i, deferred: false, out _tokens[i]), Is.Zero);
            }
        }

        internal void Disarm()
        {
            for (int i = 0; i < 3; i++)
            {
                if (_tokens[i] != 0)
                {
                    loop.Unregister(_tokens[i], _fds[i]);
                    _ = LinuxIo.Close(_fds[i]);
                    _tokens[i] = 0;
                }
            }
        }

        private void OnReady(int index)
        {
            if (index == 2)
            {
                ReplacementCalls++;
                return;
            }

            if (index == SwappedOut)
            {
                SwappedOutCalls++;
                return;
            }

            if (SwappedOut >= 0)
            {
                // The survivor again (its eventfd stays readable): unregister it so the loop idles.
                loop.Unregister(_tokens[index], _fds[index]);
                _ = LinuxIo.Close(_fds[index]);
                _tokens[index] = 0;
                return;
            }

            int other = 1 - index;
            SwappedOut = other;
            int closedNumber = _fds[other];
            loop.Unregister(_tokens[other], _fds[other]);
            _ = LinuxIo.Close(_fds[other]);
            _tokens[other] = 0;
            _fds[2] = LinuxIo.EventFd(0, LinuxIo.EfdCloexec | LinuxIo.EfdNonblock);
            Reused = _fds[2] == closedNumber;
            _handlers[2] = new Handler(this, 2);
            Assert.That(loop.Register(_fds[2], LinuxIo.EpollIn, _handlers[2], 2, deferred: false, out _tokens[2]), Is.Zero);
            Swaps++;
            done.Set();
        }

        private sealed class Handler(SwapProbe probe, int index) : IEventLoopHandler
        {
            public void OnReady(uint events, int tag) => probe.OnReady(index);

            public void OnTimer(long now)
            {
            }

            public void OnFault(Exception exception)
            {
            }
        }
    }
}
