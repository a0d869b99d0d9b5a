using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Transport.Tests;

// Invalid guest accesses are all counted, but only a budget per second is logged.
public sealed class AccessReporterTests
{
    [Test]
    public void Invalid_FloodOfBadAccesses_LogsOnlyTheBudgetThenReportsWhatItSkipped()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(1 << 20);
        var time = new FakeTimeProvider();
        var logger = new FakeLogger();
        var mmio = new VirtioMmioTransport(new FakeDevice(), memory, new RecordingInterruptSink(),
            new VirtioMmioOptions { TimeProvider = time, InvalidAccessLogLimitPerSecond = 5 }, logger);

        for (int i = 0; i < 1000; i++)
        {
            mmio.Read(0x3, new byte[4]);
        }

        Assert.Multiple(() =>
        {
            Assert.That(mmio.GetInvalidAccessCount(InvalidAccessKind.Misaligned), Is.EqualTo(1000));
            Assert.That(logger.Collector.Count, Is.EqualTo(5));
            Assert.That(logger.Collector.LatestRecord.Level, Is.EqualTo(LogLevel.Debug));
            Assert.That(logger.Collector.LatestRecord.Id.Id, Is.EqualTo(1));
        });

        time.Advance(TimeSpan.FromSeconds(1));
        mmio.Read(0x3, new byte[4]);

        IReadOnlyList<FakeLogRecord> records = logger.Collector.GetSnapshot();
        Assert.Multiple(() =>
        {
            Assert.That(records, Has.Count.EqualTo(7));
            Assert.That(records[5].Id.Id, Is.EqualTo(2));
            Assert.That(records[5].Message, Does.Contain("995"));
            Assert.That(records[6].Message, Does.Contain("Misaligned"));
        });
    }

    [Test]
    public void Invalid_DebugDisabled_CountsWithoutLogging()
    {
        using GuestMemory memory = GuestMemory.CreateAnonymous(1 << 20);
        var logger = new FakeLogger();
        logger.ControlLevel(LogLevel.Debug, enabled: false);
        var mmio = new VirtioMmioTransport(new FakeDevice(), memory, new RecordingInterruptSink(), logger: logger);

        mmio.Write(0x0, new byte[4]);

        Assert.Multiple(() =>
        {
            Assert.That(mmio.InvalidAccessCount, Is.EqualTo(1));
            Assert.That(logger.Collector.Count, Is.Zero);
        });
    }
}
