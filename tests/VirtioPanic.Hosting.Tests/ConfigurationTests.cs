using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using VirtioPanic.Hosting.Tests.Rig;

namespace VirtioPanic.Hosting.Tests;

// Options come from configuration and are validated when the host starts; a bad value stops the
// start with a message naming its key.
public sealed class ConfigurationTests
{
    [TestCase("VirtioPanic:Policy:OnPanic", "explode")]
    [TestCase("VirtioPanic:Policy:OnWatchdog", "reboot")]
    [TestCase("VirtioPanic:Devices:vm1:OnPanic", "sometimes")]
    [TestCase("VirtioPanic:Policy:StormThreshold", "1")]
    [TestCase("VirtioPanic:Policy:StormThreshold", "-3")]
    [TestCase("VirtioPanic:Policy:StormWindow", "00:00:00")]
    [TestCase("VirtioPanic:Policy:PanicGracePeriod", "-00:00:01")]
    [TestCase("VirtioPanic:Devices:vm1:CrashKernelDeadline", "2.00:00:00")]
    [TestCase("VirtioPanic:ActionTimeout", "0")]
    [TestCase("VirtioPanic:ActionTimeout", "soon")]
    [TestCase("VirtioPanic:RecoveryTimeout", "0")]
    [TestCase("VirtioPanic:RecoveryTimeout", "2.00:00:00")]
    [TestCase("VirtioPanic:JournalPath", "")]
    [TestCase("VirtioPanic:JournalDurability", "Sometimes")]
    [TestCase("VirtioPanic:Policy:OnPanik", "destroy")]
    [TestCase("VirtioPanic:JournalFile", "x.jsonl")]
    [TestCase("VirtioPanic:JournalMaxFileSize", "1000")]
    [TestCase("VirtioPanic:JournalMaxFileSize", "big")]
    [TestCase("VirtioPanic:JournalMaxFiles", "0")]
    public void BadConfiguration_FailsAtStart_NamingTheKey(string key, string value)
    {
        using var directory = new TempDirectory();
        using IHost host = Build(directory, (key, value));

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

        Assert.That(failure, Is.Not.Null, "the host started");
        Assert.That(failure!.ToString(), Does.Contain(key));
    }

    [Test]
    public void GoodConfiguration_BindsLibvirtSpellings_AndDeviceEntriesInheritThePolicy()
    {
        using var directory = new TempDirectory();
        using IHost host = Build(
            directory,
            ("VirtioPanic:Policy:OnPanic", "coredump-restart"),
            ("VirtioPanic:Policy:OnWatchdog", "inject-nmi"),
            ("VirtioPanic:Policy:PanicGracePeriod", "00:00:30"),
            ("VirtioPanic:Policy:StormThreshold", "5"),
            ("VirtioPanic:Devices:vm1:OnPanic", "log-only"),
            ("VirtioPanic:Devices:vm2:OnWatchdog", "Poweroff"),
            ("VirtioPanic:ActionTimeout", "00:00:05"),
            ("VirtioPanic:RecoveryTimeout", "00:01:00"),
            ("VirtioPanic:JournalDurability", "FlushAfterAction"),
            ("VirtioPanic:JournalMaxFileSize", "65536"),
            ("VirtioPanic:JournalMaxFiles", "9"));

        host.StartAsync().GetAwaiter().GetResult();
        VirtioPanicOptions options = host.Services.GetRequiredService<IOptions<VirtioPanicOptions>>().Value;
        host.StopAsync().GetAwaiter().GetResult();

        Assert.Multiple(() =>
        {
            Assert.That(options.Policy, Is.EqualTo(new DevicePolicy { OnPanic = PanicAction.CoredumpRestart, OnWatchdog = WatchdogAction.InjectNmi, PanicGracePeriod = TimeSpan.FromSeconds(30), StormThreshold = 5 }));
            Assert.That(options.PolicyFor("vm1"), Is.EqualTo(options.Policy with { OnPanic = PanicAction.LogOnly }));
            Assert.That(options.PolicyFor("vm2"), Is.EqualTo(options.Policy with { OnWatchdog = WatchdogAction.Poweroff }));
            Assert.That(options.PolicyFor("other"), Is.SameAs(options.Policy));
            Assert.That(options.ActionTimeout, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(options.RecoveryTimeout, Is.EqualTo(TimeSpan.FromMinutes(1)));
            Assert.That(options.JournalDurability, Is.EqualTo(JournalDurability.FlushAfterAction));
            Assert.That((options.JournalMaxFileSize, options.JournalMaxFiles), Is.EqualTo((65536L, 9)));
        });
    }

    [Test]
    public void SetPolicy_InvalidPolicy_IsRefusedNamingTheProperty()
    {
        using var directory = new TempDirectory();
        using IHost host = Build(directory);
        var manager = host.Services.GetRequiredService<PolicyService>();

        Assert.That(() => manager.Attach(new Device.WatchdogDevice(new Device.WatchdogDeviceOptions()), new FakeVmControl(), new DevicePolicy { StormThreshold = 1 }),
            Throws.ArgumentException.With.Message.Contains("StormThreshold"));
    }

    [TestCase("coredump-destroy", PanicAction.CoredumpDestroy)]
    [TestCase("CoredumpDestroy", PanicAction.CoredumpDestroy)]
    [TestCase("LOG_ONLY", PanicAction.LogOnly)]
    [TestCase("log-only", PanicAction.LogOnly)]
    public void PolicyNames_ParseLibvirtAndMemberSpellings(string text, PanicAction expected)
    {
        Assert.That(PolicyNames.TryParse(text, out PanicAction action), Is.True);
        Assert.That(action, Is.EqualTo(expected));
        Assert.That(PolicyNames.TryParse("2", out PanicAction _), Is.False, "numbers are refused");
    }

    [Test]
    public void PolicyNames_AreLibvirtVocabulary()
    {
        Assert.Multiple(() =>
        {
            Assert.That(PolicyNames.List<PanicAction>(), Is.EqualTo("destroy, restart, preserve, coredump-destroy, coredump-restart, log-only"));
            Assert.That(PolicyNames.List<WatchdogAction>(), Is.EqualTo("reset, shutdown, poweroff, pause, dump, inject-nmi, none"));
        });
    }

    private static IHost Build(TempDirectory directory, params (string Key, string Value)[] settings)
    {
        HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var values = new Dictionary<string, string?> { ["VirtioPanic:JournalPath"] = directory.File("journal.jsonl") };
        foreach ((string key, string value) in settings)
        {
            values[key] = value;
        }

        builder.Configuration.AddInMemoryCollection(values);
        builder.Services.AddVirtioPanic();
        return builder.Build();
    }
}
