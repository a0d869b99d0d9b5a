using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.VhostUser.Tests.Devices;

namespace VirtioPanic.VhostUser.Tests.Protocol;

// The back end's instruments (VhostUserMetrics, README.md "Telemetry"): refused messages by request
// (a value the protocol does not name is "unknown", so a front end cannot grow the tag's values),
// accepted connections, and the connections being served. Non-parallel like the other back-end
// tests: the meter is process-wide and this test counts every measurement on it.
[NonParallelizable]
internal sealed class VhostUserMetricsTests
{
    [Test]
    public async Task RefusedMessagesAndConnections_CountedWithBoundedTags()
    {
        var seen = new ConcurrentQueue<(string Name, long Value, string? Tag)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == VhostUserMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            seen.Enqueue((instrument.Name, value, tags.Length == 0 ? null : (string?)tags[0].Value)));
        listener.Start();

        await using (var fixture = new BackendFixture(new EntropyTestDevice(maxQueueSize: 64)))
        {
            using FakeFrontEnd front = fixture.Connect();
            front.SendU64(VhostUserRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.ReplyAck);
            front.SendState(VhostUserRequest.SetVringNum, 0, 3, needReply: true);   // not a power of two
            Assert.That(front.ReadU64Reply(VhostUserRequest.SetVringNum), Is.Not.Zero);
            front.Send((VhostUserRequest)999, [1, 2, 3], needReply: true);
            Assert.That(front.ReadU64Reply((VhostUserRequest)999), Is.Not.Zero);
            front.Send((VhostUserRequest)uint.MaxValue, [], needReply: true);
            Assert.That(front.ReadU64Reply((VhostUserRequest)uint.MaxValue), Is.Not.Zero);
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(seen.Where(s => s.Name == "virtiopanic.vhost_user.messages.refused").Select(s => s.Tag),
                Is.EqualTo(new[] { "set_vring_num", "unknown", "unknown" }));
            Assert.That(seen.Where(s => s.Name == "virtiopanic.vhost_user.connections").Select(s => s.Tag), Is.EqualTo(new[] { "accepted" }));
            Assert.That(seen.Where(s => s.Name == "virtiopanic.vhost_user.connections.active").Select(s => s.Value), Is.EqualTo(new[] { 1L, -1L }),
                "served, then closed when the fixture stopped");
        }
    }
}
