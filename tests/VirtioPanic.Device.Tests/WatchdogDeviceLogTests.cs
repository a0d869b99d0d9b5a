using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;

namespace VirtioPanic.Device.Tests;

// Logging goes through WatchdogDeviceLog; what a guest can trigger at will is rate-limited.
public sealed class WatchdogDeviceLogTests
{
    [Test]
    public void GuestTriggerableWarnings_AreRateLimited_AndReportSuppressedCount()
    {
        var time = new FakeTimeProvider();
        var logger = new FakeLogger();
        using var device = new WatchdogDevice(new WatchdogDeviceOptions(), time, logger);

        for (int i = 0; i < 500; i++)
        {
            device.WriteConfig(0x04, [1, 0, 0, 0]);
        }

        int warningsInBurst = logger.Collector.GetSnapshot().Count(r => r.Id.Id == 5006);
        time.Advance(TimeSpan.FromMinutes(1));
        device.WriteConfig(0x04, [1, 0, 0, 0]);
        FakeLogRecord afterWindow = logger.Collector.GetSnapshot().Last(r => r.Id.Id == 5006);

        Assert.Multiple(() =>
        {
            Assert.That(warningsInBurst, Is.EqualTo(10));
            Assert.That(afterWindow.Level, Is.EqualTo(LogLevel.Warning));
            Assert.That(afterWindow.Message, Does.Contain("490 similar warnings suppressed"));
            Assert.That(device.GetStatus().ProtocolErrors, Is.EqualTo(501), "every error is still counted");
        });
    }

    [Test]
    public void GuestPanic_IsLoggedAsError()
    {
        var time = new FakeTimeProvider();
        var logger = new FakeLogger();
        using var device = new WatchdogDevice(new WatchdogDeviceOptions(), time, logger);

        device.WriteConfig(0x08, [1, 0, 0, 0]);

        FakeLogRecord report = logger.Collector.GetSnapshot().Single(r => r.Id.Id == 5005);
        Assert.Multiple(() =>
        {
            Assert.That(report.Level, Is.EqualTo(LogLevel.Error));
            Assert.That(report.Message, Does.Contain("GuestPanicked"));
        });
    }
}
