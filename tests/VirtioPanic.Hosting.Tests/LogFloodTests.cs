using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging.Testing;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests;

// A guest made to write panic_events in a loop (a front end's SET_CONFIG) cannot flood the log:
// the per-event lines are rate-limited with a summary of what was suppressed, while every event
// is still journaled and counted.
public sealed class LogFloodTests
{
    [Test]
    public async Task PanicLoop_PerEventLogLinesAreBoundedAndSummarised_EveryEventJournaledAndCounted()
    {
        await using PolicyRig rig = await PolicyRig.StartAsync(new DevicePolicy { OnPanic = PanicAction.LogOnly, StormThreshold = 0 }, services: s => s.AddFakeLogging());
        FakeLogCollector logs = rig.Host.Services.GetFakeLogCollector();
        var meters = rig.Host.Services.GetRequiredService<IMeterFactory>();
        using var events = new MetricCollector<long>(meters, "VirtioPanic.Hosting", "virtiopanic.events");
        using var suppressed = new MetricCollector<long>(meters, "VirtioPanic.Hosting", "virtiopanic.log.suppressed");
        int Lines() => logs.GetSnapshot().Count(r => r.Category == typeof(PolicyService).FullName);
        int before = Lines();

        int written = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(2))
        {
            rig.Guest.Panic();
            written++;
        }

        // Every write reached the service (a burst the device folded into one event counts its folded ones).
        long covered = 0;
        int handled = 0;
        while (covered < written)
        {
            HandledEvent next = await rig.NextAsync("GUEST_PANICKED");
            covered += 1 + next.Event!.CoalescedCount;
            handled++;
        }

        int flood = Lines() - before;
        rig.Time.Advance(TimeSpan.FromSeconds(11));
        FakeLogRecord[] summaries = [.. logs.GetSnapshot().Where(r => r.Id.Id == 6050)];
        string[] journal = rig.JournalLines();

        Assert.Multiple(() =>
        {
            Assert.That(written, Is.GreaterThan(50), "the loop panicked often enough to flood (each write waits for its acceptance record to be durable on the disk)");
            Assert.That(flood, Is.LessThanOrEqualTo(20), $"{written} panics wrote {flood} lines");
            Assert.That(summaries, Has.Length.EqualTo(1));
            long held = suppressed.GetMeasurementSnapshot().Sum(m => m.Value);
            Assert.That(held, Is.GreaterThanOrEqualTo(handled - flood), "at least one line per handled event was attempted");
            Assert.That(summaries[0].Message, Does.Contain($"{held} similar messages suppressed"));
            Assert.That(events.GetMeasurementSnapshot().Sum(m => m.Value), Is.EqualTo(handled));
            Assert.That(journal.Count(l => l.Contains("\"type\":\"accepted\"", StringComparison.Ordinal)), Is.EqualTo(written), "journaled on acceptance, each one");
            Assert.That(journal.Count(l => l.Contains("\"type\":\"event\"", StringComparison.Ordinal)), Is.EqualTo(handled));
        });
    }
}
