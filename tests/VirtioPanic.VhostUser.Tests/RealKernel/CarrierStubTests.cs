using VirtioPanic.VhostUser.Protocol;
using VirtioPanic.VhostUser.Tests.Devices;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

// What a guest driver sees of a device carried on QEMU 7.2's vhost-user-gpio-pci stub (virtio ID
// 41; Debian's kernel has no driver for it), checked with a small out-of-tree probe module. These
// are the constraints the watchdog's real-kernel scenarios inherit from the carrier.
internal sealed class CarrierStubTests : RealKernelTest
{
    [Test]
    public async Task GpioCarrier_ProbeModule_SeesNoDeviceBitsTwoQueuesOf256AndAConfigSnapshot()
    {
        // The watchdog device would offer its own bits; here bits 0-3 plus both ring features.
        var device = new EntropyTestDevice(queueCount: 2, maxQueueSize: 256, configSize: 8, deviceFeatures: 0xfUL | VirtioFeatures.EventIndex | VirtioFeatures.IndirectDescriptors, deviceId: 41);
        string ko = GuestModuleBuilder.Build(Kernel, GuestModuleBuilder.GuestSource("carrier_probe"), "vp_carrier_probe", "VP_CARRIER_ID=41");
        string initramfs = WorkPath("initramfs.cpio.gz");
        NewInitramfs()
            .AddModule("virtio_pci")
            .AddKernelObject(ko)
            .AddAction("report", "echo VP-CARRIER-PROBED; sleep 2; dmesg | grep VP-CARRIER")
            .Build(initramfs);

        await using var host = new VhostUserBackendHost(device, WorkPath("gpio.sock"));
        // Once the driver has started the rings, the device changes its configuration and says so
        // (CONFIG_CHANGE_MSG on the back-end request channel).
        using var stop = new CancellationTokenSource();
        Task changer = Task.Run(
            async () =>
            {
                while (device.Context is null || device.Chains == 0)
                {
                    await Task.Delay(20, stop.Token);
                }

                device.ChangeConfig(0, [0xd0, 0xd1]);
                device.Context?.SignalConfigChange();
            },
            stop.Token);
        QemuRun run = await BootAsync(new QemuMachineOptions
        {
            Action = "report",
            Initramfs = initramfs,
            VhostUserDevices = [("vhost-user-gpio-pci", host.SocketPath)],
        });
        await stop.CancelAsync();
        bool changed = await Task.WhenAny(changer, Task.Delay(1000)) == changer && changer.IsCompletedSuccessfully;

        string? offered = Word(run, "VP-CARRIER device-features ");
        string? negotiated = Word(run, "VP-CARRIER negotiated ");
        ulong offeredBits = offered is null ? 0 : Convert.ToUInt64(offered, 16);
        ulong negotiatedBits = negotiated is null ? 0 : Convert.ToUInt64(negotiated, 16);
        string expectedConfig = Convert.ToHexString([0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7]).ToLowerInvariant();
        byte[] produced = device.Produced;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted, Is.True, run.ToString());
            // QEMU 7.2's vhost-user-gpio only ever clears bits (vhost_get_features over its list, which
            // names VIRTIO_GPIO_F_IRQ), and nothing adds bit 0 to QEMU's own offer: although the back
            // end offers bits 0-3, the guest is offered no device-type bit at all.
            Assert.That(offeredBits & 0xffffff, Is.Zero, $"device-type bits the guest is offered: {offered}\n{run}");
            Assert.That(negotiatedBits & 0xffffff, Is.Zero, $"device-type bits negotiated: {negotiated}");
            Assert.That(host.Backend.Statistics.NegotiatedFeatures & 0xffffff, Is.Zero, "device-type bits in SET_FEATURES");
            // Ring features reach the guest only when the back end offers them.
            Assert.That(negotiatedBits & (VirtioFeatures.EventIndex | VirtioFeatures.IndirectDescriptors), Is.EqualTo(VirtioFeatures.EventIndex | VirtioFeatures.IndirectDescriptors));
            Assert.That(Word(run, "VP-CARRIER config "), Is.EqualTo(expectedConfig), "8 config bytes fetched with GET_CONFIG");
            Assert.That(Word(run, "VP-CARRIER config-after-write "), Is.EqualTo(expectedConfig), "a driver write is not visible");
            Assert.That(device.ConfigReads, Is.EqualTo(1), "QEMU fetched the configuration once, at realize, and serves that snapshot");
            Assert.That(device.ConfigWrites, Is.Empty, "no SET_CONFIG reached the back end");
            Assert.That(host.Backend.Statistics.NegotiatedProtocolFeatures & (ulong)VhostUserProtocolFeatures.Config, Is.Not.Zero, "CONFIG negotiated");
            Assert.That(Line(run, "VP-CARRIER queue-sizes "), Is.EqualTo("256 256"), "two queues of 256");
            Assert.That(Word(run, "VP-CARRIER reply "), Is.EqualTo(Convert.ToHexString(produced.AsSpan(0, Math.Min(8, produced.Length))).ToLowerInvariant()), "the request on queue 0 was answered with the device's bytes");
            Assert.That(device.IndirectChains, Is.EqualTo(1), "Linux sent the two-buffer request as an indirect table");
            // A configuration change reaches the driver as a notification, but QEMU 7.2's gpio stub
            // re-serves its realize-time snapshot: the new bytes never reach the guest.
            Assert.That(changed, Is.True, "the device changed its configuration after activation");
            Assert.That(host.Backend.Statistics.NegotiatedProtocolFeatures & (ulong)VhostUserProtocolFeatures.BackendReq, Is.Not.Zero, "BACKEND_REQ negotiated");
            Assert.That(Word(run, "VP-CARRIER config-changed "), Is.EqualTo(expectedConfig), "config-changed callback ran and saw the snapshot");
        }
    }

    private static string? Line(QemuRun run, string marker)
    {
        foreach (string line in run.SerialLog.Split('\n'))
        {
            int at = line.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0)
            {
                return line[(at + marker.Length)..].Trim();
            }
        }

        return null;
    }

    private static string? Word(QemuRun run, string marker) => Line(run, marker)?.Split(' ')[0];
}
