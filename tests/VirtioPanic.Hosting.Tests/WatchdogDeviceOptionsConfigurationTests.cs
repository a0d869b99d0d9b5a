using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting.Tests;

// AddWatchdogDeviceOptions: the Device section is bound and validated by the library at start, one
// failure per key naming the key, the value and what is allowed; a misspelled key is an error,
// not a silently kept default.
public sealed class WatchdogDeviceOptionsConfigurationTests
{
    [Test]
    public void GoodSection_BindsEveryKey()
    {
        using IHost host = Build(
            ("Device:DeviceId", "vm7"),
            ("Device:Features", "Events, PanicConfig, Control"),
            ("Device:DefaultTimeout", "00:00:30"),
            ("Device:MinTimeout", "00:00:00.250"),
            ("Device:MaxTimeout", "00:10:00"),
            ("Device:ResumeGrace", "00:00:00"),
            ("Device:EventCapacity", "16"),
            ("Device:StartPaused", "true"),
            ("Device:VcpuCount", "8"),
            ("Device:VcpuStallTimeout", "00:00:05"),
            ("Device:VcpuStallSecondStage", "00:00:00.250"));

        host.StartAsync().GetAwaiter().GetResult();
        WatchdogDeviceOptions options = host.Services.GetRequiredService<IOptions<WatchdogDeviceOptions>>().Value;
        host.StopAsync().GetAwaiter().GetResult();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(options.DeviceId, Is.EqualTo("vm7"));
            Assert.That(options.Features, Is.EqualTo(WatchdogFeatures.Events | WatchdogFeatures.PanicConfig | WatchdogFeatures.Control));
            Assert.That((options.DefaultTimeout, options.MinTimeout, options.MaxTimeout), Is.EqualTo((TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(250), TimeSpan.FromMinutes(10))));
            Assert.That(options.ResumeGrace, Is.EqualTo(TimeSpan.Zero));
            Assert.That(options.EventCapacity, Is.EqualTo(16));
            Assert.That(options.StartPaused, Is.True);
            Assert.That((options.VcpuCount, options.VcpuStallTimeout, options.VcpuStallSecondStage), Is.EqualTo((8, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(250))));
        }
    }

    [Test]
    public void NoSection_KeepsTheLibraryDefaults_AndConfigureApplies()
    {
        HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddWatchdogDeviceOptions(o => o.DeviceId = "set-in-code");
        using IHost host = builder.Build();

        host.StartAsync().GetAwaiter().GetResult();
        WatchdogDeviceOptions options = host.Services.GetRequiredService<IOptions<WatchdogDeviceOptions>>().Value;
        host.StopAsync().GetAwaiter().GetResult();

        Assert.That((options.DeviceId, options.DefaultTimeout, options.Features), Is.EqualTo(("set-in-code", new WatchdogDeviceOptions().DefaultTimeout, WatchdogFeatures.All)));
    }

    [TestCase("Device:DefaultTimeout", "-00:00:01", "a whole number of milliseconds")]
    [TestCase("Device:DefaultTimeout", "00:00:00.0005", "a whole number of milliseconds")]
    [TestCase("Device:DefaultTimeout", "soon", "not a time span")]
    [TestCase("Device:DefaultTimeot", "00:00:05", "'00:00:05': unknown key; the keys of Device are: DeviceId, Features, DefaultTimeout")]
    [TestCase("Device:MaxTimeout", "00:00:01.500", "must lie from Device:MinTimeout (00:00:01) to Device:MaxTimeout (00:00:01.5000000)")]
    [TestCase("Device:MinTimeout", "60.00:00:00", "(4294967295 ms)")]
    [TestCase("Device:ResumeGrace", "-00:00:01", "must be from 00:00:00 to")]
    [TestCase("Device:EventCapacity", "3", "must be 4 or more")]
    [TestCase("Device:EventCapacity", "many", "not a whole number")]
    [TestCase("Device:StartPaused", "maybe", "allowed: true or false")]
    [TestCase("Device:Features", "Events, Telepathy", "allowed: names from None, Events, PanicConfig")]
    [TestCase("Device:Features", "7", "allowed: names from")]
    [TestCase("Device:Features", "Pretimeout", "Pretimeout requires Control")]
    [TestCase("Device:Features", "LogTail", "LogTail requires Events")]
    [TestCase("Device:DeviceId", "", "must not be empty")]
    [TestCase("Device:VcpuCount", "-1", "must be from 0 (no per-vCPU stall detection) to 1024")]
    [TestCase("Device:VcpuCount", "1025", "must be from 0 (no per-vCPU stall detection) to 1024")]
    [TestCase("Device:VcpuCount", "all", "not a whole number")]
    [TestCase("Device:VcpuStallTimeout", "00:00:00.999", "must be at least 00:00:01")]
    [TestCase("Device:VcpuStallTimeout", "later", "not a time span")]
    [TestCase("Device:VcpuStallSecondStage", "00:00:00", "a whole number of milliseconds")]
    public void BadKey_FailsAtStart_WithOneLineNamingKeyValueAndWhatIsAllowed(string key, string value, string allowed)
    {
        using IHost host = Build((key, value));

        OptionsValidationException failure = StartFails(host);

        string line = failure.Failures.Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(line, Does.StartWith(key == "Device:MaxTimeout" ? "Device:DefaultTimeout" : key), "the key");
            Assert.That(line, Does.Contain(key == "Device:MaxTimeout" ? "'00:00:20'" : value.Length > 0 ? value : "''"), "the value");
            Assert.That(line, Does.Contain(allowed), "what is allowed");
            Assert.That(line, Does.Not.Contain("WatchdogDeviceOptions").And.Not.Contain('\n'), "configuration words, one line");
        }
    }

    [Test]
    public void SeveralMistakes_AreReportedTogether_OneLineEach_ConversionAndRangeAlike()
    {
        using IHost host = Build(("Device:DefaultTimeot", "1"), ("Device:EventCapacity", "x"), ("Device:StartPaused", "y"), ("Device:ResumeGrace", "-00:00:01"), ("Device:MaxTimeout", "soon"));

        OptionsValidationException failure = StartFails(host);

        Assert.That(failure.Failures.Select(f => f[..f.IndexOf(' ', StringComparison.Ordinal)]), Is.EquivalentTo(new[] { "Device:DefaultTimeot", "Device:EventCapacity", "Device:StartPaused", "Device:ResumeGrace", "Device:MaxTimeout" }));
    }

    // The start-up validator and the device's own Validate agree on what is valid, so a
    // configuration the host accepted never fails when the device is created.
    [TestCaseSource(nameof(Cases))]
    public void Validator_AgreesWithWatchdogDeviceOptionsValidate(WatchdogDeviceOptions options)
    {
        bool accepted = new WatchdogDeviceOptionsValidator().Validate(Options.DefaultName, options).Succeeded;
        bool valid;
        try
        {
            options.Validate();
            valid = true;
        }
        catch (ArgumentException)
        {
            valid = false;
        }

        Assert.That(accepted, Is.EqualTo(valid));
    }

    private static IEnumerable<WatchdogDeviceOptions> Cases()
    {
        yield return new WatchdogDeviceOptions();
        yield return new WatchdogDeviceOptions { DeviceId = string.Empty };
        yield return new WatchdogDeviceOptions { Features = (WatchdogFeatures)(1UL << 40) };
        yield return new WatchdogDeviceOptions { Features = WatchdogFeatures.Pretimeout };
        yield return new WatchdogDeviceOptions { Features = WatchdogFeatures.LogTail };
        yield return new WatchdogDeviceOptions { Features = WatchdogFeatures.None };
        yield return new WatchdogDeviceOptions { MinTimeout = TimeSpan.Zero };
        yield return new WatchdogDeviceOptions { MinTimeout = TimeSpan.FromMilliseconds(1) };
        yield return new WatchdogDeviceOptions { DefaultTimeout = TimeSpan.FromTicks(TimeSpan.TicksPerSecond * 5 + 1) };
        yield return new WatchdogDeviceOptions { MaxTimeout = TimeSpan.FromMilliseconds(uint.MaxValue) };
        yield return new WatchdogDeviceOptions { MaxTimeout = TimeSpan.FromMilliseconds(uint.MaxValue + 1L) };
        yield return new WatchdogDeviceOptions { DefaultTimeout = TimeSpan.FromHours(2) };
        yield return new WatchdogDeviceOptions { DefaultTimeout = TimeSpan.FromMilliseconds(500) };
        yield return new WatchdogDeviceOptions { ResumeGrace = TimeSpan.Zero };
        yield return new WatchdogDeviceOptions { ResumeGrace = TimeSpan.FromMilliseconds(-1) };
        yield return new WatchdogDeviceOptions { ResumeGrace = TimeSpan.FromMilliseconds(uint.MaxValue + 1L) };
        yield return new WatchdogDeviceOptions { EventCapacity = 4 };
        yield return new WatchdogDeviceOptions { EventCapacity = 3 };
        yield return new WatchdogDeviceOptions { VcpuCount = 1024 };
        yield return new WatchdogDeviceOptions { VcpuCount = 1025 };
        yield return new WatchdogDeviceOptions { VcpuCount = -1 };
        yield return new WatchdogDeviceOptions { VcpuStallTimeout = TimeSpan.FromMilliseconds(999) };
        yield return new WatchdogDeviceOptions { VcpuStallTimeout = TimeSpan.FromSeconds(1) };
        yield return new WatchdogDeviceOptions { VcpuStallTimeout = TimeSpan.FromTicks(TimeSpan.TicksPerSecond * 2 + 1) };
        yield return new WatchdogDeviceOptions { VcpuStallSecondStage = TimeSpan.Zero };
        yield return new WatchdogDeviceOptions { VcpuStallSecondStage = TimeSpan.FromMilliseconds(1) };
        yield return new WatchdogDeviceOptions { VcpuStallSecondStage = TimeSpan.FromMilliseconds(uint.MaxValue + 1L) };
    }

    private static OptionsValidationException StartFails(IHost host)
    {
        Exception? failure = null;
        try
        {
            host.StartAsync().GetAwaiter().GetResult();
            host.StopAsync().GetAwaiter().GetResult();
        }
        catch (Exception ex)
        {
            failure = ex;
        }

        Assert.That(failure, Is.InstanceOf<OptionsValidationException>(), "the host started, or failed otherwise");
        return (OptionsValidationException)failure!;
    }

    private static IHost Build(params (string Key, string Value)[] settings)
    {
        HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value)));
        builder.Services.AddWatchdogDeviceOptions();
        return builder.Build();
    }
}
