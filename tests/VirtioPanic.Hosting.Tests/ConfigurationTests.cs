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
    public void GoodConfiguration_SequencesInTheActionKeys_BindAsFirstActionAndLaterSteps()
    {
        using var directory = new TempDirectory();
        using IHost host = Build(
            directory,
            ("VirtioPanic:Policy:OnWatchdog", "inject-nmi; 10s dump; 00:01:00 reset"),
            ("VirtioPanic:Policy:OnVcpuStall", "none;500ms poweroff"),
            ("VirtioPanic:Devices:vm1:OnPanic", " log-only ; 30s preserve ; 2m coredump-destroy "));

        host.StartAsync().GetAwaiter().GetResult();
        VirtioPanicOptions options = host.Services.GetRequiredService<IOptions<VirtioPanicOptions>>().Value;
        host.StopAsync().GetAwaiter().GetResult();

        var watchdog = new DevicePolicy
        {
            OnWatchdog = WatchdogAction.InjectNmi,
            WatchdogEscalation = [new(TimeSpan.FromSeconds(10), WatchdogAction.Dump), new(TimeSpan.FromMinutes(1), WatchdogAction.Reset)],
            OnVcpuStall = WatchdogAction.None,
            VcpuStallEscalation = [new(TimeSpan.FromMilliseconds(500), WatchdogAction.Poweroff)],
        };
        Assert.Multiple(() =>
        {
            Assert.That(options.Policy, Is.EqualTo(watchdog), "value equality of the steps");
            Assert.That(options.PolicyFor("vm1"), Is.EqualTo(watchdog with { OnPanic = PanicAction.LogOnly, PanicEscalation = [new(TimeSpan.FromSeconds(30), PanicAction.Preserve), new(TimeSpan.FromMinutes(2), PanicAction.CoredumpDestroy)] }));
            Assert.That(PolicyNames.WatchdogPlan(options.Policy), Is.EqualTo("inject-nmi; 10s dump; 1m reset"));
            Assert.That(PolicyNames.PanicPlan(options.PolicyFor("vm1")), Is.EqualTo("log-only; 30s preserve; 2m coredump-destroy"));
            Assert.That(PolicyNames.VcpuStallPlan(options.Policy), Is.EqualTo("none; 500ms poweroff"));
            Assert.That(PolicyNames.WatchdogPlan(new DevicePolicy()), Is.EqualTo("reset"), "the single action is the one-step plan");
        });
    }

    [TestCase("VirtioPanic:Policy:OnWatchdog", "inject-nmi; dump", "Step 2 ('dump') needs a delay")]
    [TestCase("VirtioPanic:Policy:OnWatchdog", "10s reset", "write 'none; 10s reset'")]
    [TestCase("VirtioPanic:Policy:OnWatchdog", "inject-nmi; 10s explode", "Step 2: 'explode' is not a valid WatchdogAction")]
    [TestCase("VirtioPanic:Policy:OnWatchdog", "inject-nmi; soon reset", "Step 2: 'soon' is not a delay")]
    [TestCase("VirtioPanic:Policy:OnWatchdog", "inject-nmi;; 10s reset", "Step 2 is empty")]
    [TestCase("VirtioPanic:Policy:OnWatchdog", "reset; 10s dump", "step 1 (reset) resets or powers off the VM")]
    [TestCase("VirtioPanic:Policy:OnWatchdog", "inject-nmi; 0s reset", "step 2 (reset) must come a positive time")]
    [TestCase("VirtioPanic:Policy:OnWatchdog", "inject-nmi; 25h reset", "step 2 (reset) must come a positive time")]
    [TestCase("VirtioPanic:Policy:OnWatchdog", "dump; 10s none", "step 2 is none, which does nothing")]
    [TestCase("VirtioPanic:Policy:OnWatchdog", "dump; 1s dump; 1s dump; 1s dump; 1s dump; 1s dump; 1s dump; 1s dump; 1s reset", "at most 8")]
    [TestCase("VirtioPanic:Devices:vm1:OnPanic", "restart; 10s destroy", "step 1 (restart) resets or powers off the VM")]
    [TestCase("VirtioPanic:Devices:vm1:OnPanic", "preserve; 10s log-only", "step 2 is log-only, which does nothing")]
    [TestCase("VirtioPanic:Policy:OnVcpuStall", "inject-nmi; 10s poweroff; 10s reset", "step 2 (poweroff) resets or powers off the VM")]
    [TestCase("VirtioPanic:Policy:OnVcpuStall", "sometimes", "'sometimes' is not a valid WatchdogAction")]
    public void BadSequence_FailsAtStart_NamingTheKeyAndTheStep(string key, string value, string why)
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
        Assert.That(failure!.Message, Does.Contain(key).And.Contain(why));
    }

    [Test]
    public void DevicePolicy_EscalationSteps_AreCopiedWhenSet()
    {
        WatchdogStep[] steps = [new(TimeSpan.FromSeconds(10), WatchdogAction.Reset)];
        var policy = new DevicePolicy { OnWatchdog = WatchdogAction.InjectNmi, WatchdogEscalation = steps };
        steps[0] = new WatchdogStep(TimeSpan.FromSeconds(1), WatchdogAction.Poweroff);

        Assert.Multiple(() =>
        {
            Assert.That(policy.WatchdogEscalation.Single(), Is.EqualTo(new WatchdogStep(TimeSpan.FromSeconds(10), WatchdogAction.Reset)));
            Assert.That(policy, Is.EqualTo(new DevicePolicy { OnWatchdog = WatchdogAction.InjectNmi, WatchdogEscalation = [new(TimeSpan.FromSeconds(10), WatchdogAction.Reset)] }));
            Assert.That(policy, Is.Not.EqualTo(new DevicePolicy { OnWatchdog = WatchdogAction.InjectNmi }));
            Assert.That(new DevicePolicy { WatchdogEscalation = null! }.WatchdogEscalation, Is.Empty);
        });
    }

    [Test]
    public void SetPolicy_InvalidSequence_IsRefusedNamingTheStep()
    {
        using var directory = new TempDirectory();
        using IHost host = Build(directory);
        var manager = host.Services.GetRequiredService<PolicyService>();

        Assert.That(() => manager.Attach(new Device.WatchdogDevice(new Device.WatchdogDeviceOptions()), new FakeVmControl(), new DevicePolicy { OnWatchdog = WatchdogAction.Poweroff, WatchdogEscalation = [new(TimeSpan.FromSeconds(1), WatchdogAction.Reset)] }),
            Throws.ArgumentException.With.Message.Contains("DevicePolicy:OnWatchdog: step 1 (poweroff)"));
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
