using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.VhostUser.Tests.Devices;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser.Tests.Protocol;

// VhostUserBackendOptions.ImpliedDeviceFeatures: device-type bits a carrier front end cannot
// forward, treated as negotiated by agreement (carrier testing).
[NonParallelizable]
internal sealed class ImpliedFeaturesTests
{
    private const ulong ProtocolFeaturesBit = 1UL << 30;
    private const int ImpliedFeaturesLogEvent = 22;

    [Test]
    public async Task ImpliedBits_ReachAcceptFeaturesAndTheActivationContext_LoggedOncePerConnection()
    {
        var device = new EntropyTestDevice(configSize: 8, deviceFeatures: 0x3UL | VirtioFeatures.EventIndex);
        await using var fixture = new BackendFixture(device, new VhostUserBackendOptions { ImpliedDeviceFeatures = 0x1 });
        using FakeFrontEnd front = fixture.Connect();
        front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);

        // Like QEMU's gpio stub: no device-type bit in SET_FEATURES.
        const ulong Acked = VirtioFeatures.Version1 | ProtocolFeaturesBit | VirtioFeatures.EventIndex;
        front.SendU64(VhostUserRequest.SetFeatures, Acked, needReply: true);
        ulong first = front.ReadU64Reply(VhostUserRequest.SetFeatures);
        ulong accepted = device.AcceptedFeatures;
        StartRing(front);
        // QEMU re-sends the same SET_FEATURES while the rings run: still the same feature set.
        front.SendU64(VhostUserRequest.SetFeatures, Acked, needReply: true);
        ulong again = front.ReadU64Reply(VhostUserRequest.SetFeatures);
        int logged = fixture.Host.Logger.Entries.Count(e => e.Id.Id == ImpliedFeaturesLogEvent);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(first, Is.Zero, "SET_FEATURES acked");
            Assert.That(again, Is.Zero, "an identical SET_FEATURES while running is not a change");
            Assert.That(accepted, Is.EqualTo(0x1UL | VirtioFeatures.Version1 | VirtioFeatures.EventIndex), "AcceptFeatures saw the implied bit");
            Assert.That(device.Activations, Is.EqualTo(1));
            Assert.That(device.ActivatedFeatures & 0xffffff, Is.EqualTo(0x1UL), "the context's negotiated features carry the implied bit, and only it");
            Assert.That(fixture.Statistics.NegotiatedFeatures & 0xffffff, Is.EqualTo(0x1UL));
            Assert.That(logged, Is.EqualTo(1), "logged once per connection");
        }

        // A new connection logs again.
        front.CloseSocket();
        fixture.WaitConnectionsClosed(1);
        using FakeFrontEnd second = fixture.Connect();
        second.SendU64(VhostUserRequest.SetFeatures, Acked);
        _ = second.GetFeatures();
        Assert.That(fixture.Host.Logger.Entries.Count(e => e.Id.Id == ImpliedFeaturesLogEvent), Is.EqualTo(2));
    }

    [Test]
    public async Task ImpliedBits_AlreadyAcked_NotLogged()
    {
        var device = new EntropyTestDevice(deviceFeatures: 0x1);
        await using var fixture = new BackendFixture(device, new VhostUserBackendOptions { ImpliedDeviceFeatures = 0x1 });
        using FakeFrontEnd front = fixture.Connect();

        front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1 | ProtocolFeaturesBit | 0x1);
        _ = front.GetFeatures();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(device.AcceptedFeatures, Is.EqualTo(0x1UL | VirtioFeatures.Version1));
            Assert.That(fixture.Host.Logger.Entries.Any(e => e.Id.Id == ImpliedFeaturesLogEvent), Is.False);
        }
    }

    [Test]
    public async Task Default_NothingImplied()
    {
        var device = new EntropyTestDevice(deviceFeatures: 0x3);
        await using var fixture = new BackendFixture(device);
        using FakeFrontEnd front = fixture.Connect();

        front.SendU64(VhostUserRequest.SetFeatures, VirtioFeatures.Version1 | ProtocolFeaturesBit);
        _ = front.GetFeatures();

        Assert.That(device.AcceptedFeatures, Is.EqualTo(VirtioFeatures.Version1));
    }

    [TestCase(0x4UL, TestName = "ImpliedBits_NotOfferedByTheDevice_Refused")]
    [TestCase(VirtioFeatures.EventIndex, TestName = "ImpliedBits_RingFeatureOffered_RefusedAsNotADeviceTypeBit")]
    [TestCase(VirtioFeatures.Version1, TestName = "ImpliedBits_TransportFeature_Refused")]
    public void ImpliedBits_Invalid_ConstructorThrows(ulong implied)
    {
        var device = new EntropyTestDevice(deviceFeatures: 0x3UL | VirtioFeatures.EventIndex);
        string directory = RealKernel.TestPaths.CreateTempDirectory("vp-vu");
        try
        {
            Assert.That(
                () => new VhostUserBackend(device, Path.Combine(directory, "b.sock"), logger: null, new VhostUserBackendOptions { ImpliedDeviceFeatures = implied }),
                Throws.ArgumentException.With.Message.Contains("ImpliedDeviceFeatures"));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static void StartRing(FakeFrontEnd front)
    {
        front.SendQemuStyleMemTable();
        SplitRingDriver ring = front.NewRing(8, eventIndex: true);
        front.ConfigureRing(0, ring);
        front.SendU64(VhostUserRequest.SetVringCall, 0, fds: [front.NewEventFd()]);
        front.SendU64(VhostUserRequest.SetVringKick, 0, fds: [front.NewEventFd()]);
        front.SendState(VhostUserRequest.SetVringEnable, 0, 1);
        _ = front.GetFeatures();
    }
}
