using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Device.Tests;

// Device ID, queues, feature bits and the configuration layout (spec §1–§4, §6.7).
public sealed class ConfigTests
{
    private const ulong Version1 = VirtioFeatures.Version1;

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_1_DeviceIdIs35_WithThreeQueues()
    {
        using var rig = new WatchdogRig();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Virtio.DeviceId, Is.EqualTo(35u));
            Assert.That(rig.Virtio.QueueCount, Is.EqualTo(3));
            Assert.That(rig.Virtio.GetMaxQueueSize(0), Is.EqualTo(256));
            Assert.That(rig.Virtio.GetMaxQueueSize(1), Is.EqualTo(256));
            Assert.That(rig.Virtio.GetMaxQueueSize(2), Is.EqualTo(256));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_1_AllFeaturesNegotiated_OnlyWatchdogQueueSetUp_Works()
    {
        using var rig = new WatchdogRig();
        rig.Activate(WatchdogFeatures.All, eventQueue: false, noticeQueue: false);

        Assert.That(rig.Heartbeat(), Is.EqualTo(1));
        rig.Device.Notify(1);
        rig.Device.Notify(2);
        Assert.That(rig.Device.GetStatus().NeedsReset, Is.False);
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_2_OffersAllBitsAndRefusesMissingPrerequisites()
    {
        using var rig = new WatchdogRig();
        ulong offered = rig.Virtio.DeviceFeatures;

        Assert.Multiple(() =>
        {
            Assert.That(offered & 0x3F, Is.EqualTo(0x3FUL), "bits 0-5 offered");
            Assert.That(rig.Virtio.AcceptFeatures(Version1 | (ulong)WatchdogFeatures.Pretimeout), Is.False, "PRETIMEOUT without CONTROL");
            Assert.That(rig.Virtio.AcceptFeatures(Version1 | (ulong)WatchdogFeatures.LogTail), Is.False, "LOG_TAIL without EVENTS");
            Assert.That(rig.Virtio.AcceptFeatures(Version1 | (ulong)(WatchdogFeatures.Pretimeout | WatchdogFeatures.Control)), Is.True);
            Assert.That(rig.Virtio.AcceptFeatures(Version1 | (ulong)(WatchdogFeatures.LogTail | WatchdogFeatures.Events)), Is.True);
            Assert.That(rig.Virtio.AcceptFeatures(Version1), Is.True, "the baseline");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_2_OptionsCannotOfferAFeatureWithoutItsPrerequisite()
    {
        Assert.Multiple(() =>
        {
            Assert.That(() => new WatchdogDevice(new WatchdogDeviceOptions { Features = WatchdogFeatures.Pretimeout }), Throws.ArgumentException);
            Assert.That(() => new WatchdogDevice(new WatchdogDeviceOptions { Features = WatchdogFeatures.LogTail }), Throws.ArgumentException);
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_3_LayoutWithAllFeatures()
    {
        var options = new WatchdogDeviceOptions { DefaultTimeout = TimeSpan.FromSeconds(30), MinTimeout = TimeSpan.FromSeconds(2), MaxTimeout = TimeSpan.FromSeconds(600) };
        using var rig = new WatchdogRig(options);
        rig.Device.SetBootReason(WatchdogBootReason.Watchdog);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Virtio.ConfigSize, Is.EqualTo(20));
            Assert.That(rig.ReadConfig32(0x00), Is.EqualTo(1u), "boot_reason");
            Assert.That(rig.ReadConfig32(0x04), Is.EqualTo(30_000u), "default_timeout_ms");
            Assert.That(rig.ReadConfig32(0x08), Is.EqualTo(7u), "panic_events");
            Assert.That(rig.ReadConfig32(0x0C), Is.EqualTo(2_000u), "min_timeout_ms");
            Assert.That(rig.ReadConfig32(0x10), Is.EqualTo(600_000u), "max_timeout_ms");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_3_FieldsOfFeaturesNotOffered_ReadAsSpecified()
    {
        var options = new WatchdogDeviceOptions { Features = WatchdogFeatures.None, DefaultTimeout = TimeSpan.FromSeconds(30) };
        using var rig = new WatchdogRig(options);
        rig.Device.SetBootReason(WatchdogBootReason.Panic);

        Assert.Multiple(() =>
        {
            Assert.That(rig.ReadConfig32(0x00), Is.EqualTo(0u), "boot_reason without BOOT_REASON");
            Assert.That(rig.ReadConfig32(0x08), Is.EqualTo(0u), "panic_events without PANIC_CONFIG");
            Assert.That(rig.ReadConfig32(0x0C), Is.EqualTo(30_000u), "min = default without CONTROL");
            Assert.That(rig.ReadConfig32(0x10), Is.EqualTo(30_000u), "max = default without CONTROL");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_3_NarrowAndUnalignedReads_MatchTheLittleEndianImage()
    {
        using var rig = new WatchdogRig();
        byte[] whole = new byte[20];
        rig.Device.ReadConfig(0, whole);
        byte[] two = new byte[2];
        rig.Device.ReadConfig(5, two);

        Assert.Multiple(() =>
        {
            Assert.That(BitConverter.ToUInt32(whole, 4), Is.EqualTo(20_000u));
            Assert.That(two, Is.EqualTo(whole[5..7]));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_3_WritesToReadOnlyFields_AreIgnored()
    {
        using var rig = new WatchdogRig();

        rig.WriteConfig32(0x04, 1);
        rig.WriteConfig32(0x0C, 1);
        rig.WriteConfig32(0x10, 1);

        Assert.Multiple(() =>
        {
            Assert.That(rig.ReadConfig32(0x04), Is.EqualTo(20_000u));
            Assert.That(rig.ReadConfig32(0x0C), Is.EqualTo(1_000u));
            Assert.That(rig.ReadConfig32(0x10), Is.EqualTo(3_600_000u));
            Assert.That(rig.Drain<GuestProtocolErrorEvent>().Select(e => e.Error), Is.All.EqualTo(WatchdogProtocolError.InvalidConfigWrite));
            Assert.That(rig.Device.GetStatus().ProtocolErrors, Is.EqualTo(3));
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_20_PanicEventsReadsSupportedMask()
    {
        using var rig = new WatchdogRig();

        Assert.That(rig.ReadConfig32(0x08), Is.EqualTo(7u));
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_29_BootReason_SurvivesDeviceReset_ClearedByZeroWrite_OtherWritesIgnored()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.BootReason);
        rig.Device.SetBootReason(WatchdogBootReason.Watchdog);
        Assert.That(rig.Context!.ConfigChanges, Is.EqualTo(1), "a host change is a config change");

        rig.ResetDevice();
        Assert.That(rig.ReadConfig32(0x00), Is.EqualTo(1u), "kept across a device reset");

        rig.WriteConfig32(0x00, 2);
        Assert.That(rig.ReadConfig32(0x00), Is.EqualTo(1u), "non-zero writes are ignored");

        rig.WriteConfig32(0x00, 0);
        Assert.That(rig.ReadConfig32(0x00), Is.EqualTo(0u), "0 acknowledges");
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_29_OnVmReset_SetsTheBootReasonForTheNextBoot()
    {
        using var rig = new WatchdogRig();

        rig.Device.OnVmReset(WatchdogBootReason.Panic);

        Assert.Multiple(() =>
        {
            Assert.That(rig.ReadConfig32(0x00), Is.EqualTo(2u));
            Assert.That(rig.Device.GetStatus().BootReason, Is.EqualTo(WatchdogBootReason.Panic));
        });
    }

    [Test]
    public void Options_InvalidValues_FailWithTheSettingNamed()
    {
        Assert.Multiple(() =>
        {
            Assert.That(() => new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "" }), Throws.ArgumentException.With.Message.Contains("DeviceId"));
            Assert.That(() => new WatchdogDevice(new WatchdogDeviceOptions { MinTimeout = TimeSpan.FromSeconds(30) }), Throws.ArgumentException.With.Message.Contains("MinTimeout"));
            Assert.That(() => new WatchdogDevice(new WatchdogDeviceOptions { DefaultTimeout = TimeSpan.FromTicks(15) }), Throws.ArgumentException.With.Message.Contains("DefaultTimeout"));
            Assert.That(() => new WatchdogDevice(new WatchdogDeviceOptions { ResumeGrace = TimeSpan.FromSeconds(-1) }), Throws.ArgumentException.With.Message.Contains("ResumeGrace"));
            Assert.That(() => new WatchdogDevice(new WatchdogDeviceOptions { EventCapacity = 1 }), Throws.ArgumentException.With.Message.Contains("EventCapacity"));
        });
    }
}
