using VirtioPanic.VhostUser.Tests.Devices;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

// Linux's own virtio-rng driver, no code of ours in the guest: QEMU 7.2's vhost-user-rng-pci
// stub connected to our back end serving EntropyTestDevice, whose byte stream is deterministic.
internal sealed class StockVirtioRngTests : RealKernelTest
{
    private const int ReadBytes = 256;

    // rng_core.default_quality=0 keeps the kernel's khwrngd from draining the device between our
    // reads (the hwrng core still takes its 32 bytes of early randomness at registration).
    private const string HwrngAction = """
        echo "VP-RNG-CURRENT $(cat /sys/class/misc/hw_random/rng_current)"
        dd if=/dev/hwrng bs=64 count=4 2>/dev/null | od -An -tx1 -v | sed 's/^/VP-HEX /'
        """;

    [Test]
    public async Task HwrngRead_StockDriverOverVhostUserRng_ReadsExactlyTheDeviceStream()
    {
        var device = new EntropyTestDevice();
        string initramfs = WorkPath("initramfs.cpio.gz");
        NewInitramfs()
            .AddModule("virtio_pci")
            .AddModule("virtio_rng")
            .AddAction("hwrng", HwrngAction)
            .Build(initramfs);

        await using var host = new VhostUserBackendHost(device, WorkPath("rng.sock"));
        QemuRun run = await BootAsync(new QemuMachineOptions
        {
            Action = "hwrng",
            Initramfs = initramfs,
            KernelArguments = ["rng_core.default_quality=0"],
            VhostUserDevices = [("vhost-user-rng-pci", host.SocketPath)],
        });

        byte[] guestBytes = GuestHex(run);
        byte[] produced = device.Produced;
        int position = produced.AsSpan().IndexOf(guestBytes);
        ulong negotiated = host.Backend.Statistics.NegotiatedFeatures;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted, Is.True, run.ToString());
            Assert.That(run.SerialLog, Does.Contain("VP-RNG-CURRENT virtio_rng.0"), run.ToString());
            Assert.That(guestBytes, Has.Length.EqualTo(ReadBytes), run.ToString());
            Assert.That(position, Is.GreaterThanOrEqualTo(0), $"the guest's bytes are not a contiguous run of the device's stream\nguest: {Convert.ToHexString(guestBytes)}\ndevice: {Convert.ToHexString(produced)}");
            // Offered neither ring feature, yet QEMU 7.2's rng stub forwards the guest's choice: honoured.
            Assert.That(negotiated & VirtioFeatures.EventIndex, Is.Not.Zero, "EVENT_IDX negotiated");
            Assert.That(negotiated & VirtioFeatures.IndirectDescriptors, Is.Not.Zero, "INDIRECT_DESC negotiated");
            Assert.That(device.ActivatedFeatures & VirtioFeatures.EventIndex, Is.Not.Zero, "the ring engine ran with EVENT_IDX");
            // Without avail_event publication the driver never kicks a second time (pitfall 2).
            Assert.That(device.Chains, Is.GreaterThan(1), "requests served");
            Assert.That(run.ExitCode, Is.Zero, run.ToString());
        }

        TestContext.Out.WriteLine($"chains {device.Chains}, indirect {device.IndirectChains}, kicks {host.Backend.Statistics.Kicks}, calls {host.Backend.Statistics.UsedBufferNotifications}, produced {produced.Length} bytes, guest read at offset {position}");
    }

    internal static byte[] GuestHex(QemuRun run)
    {
        var bytes = new List<byte>();
        foreach (string line in run.SerialLog.Split('\n'))
        {
            int at = line.IndexOf("VP-HEX ", StringComparison.Ordinal);
            if (at < 0)
            {
                continue;
            }

            foreach (string token in line[(at + 7)..].Split([' ', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries))
            {
                if (token.Length == 2 && byte.TryParse(token, System.Globalization.NumberStyles.HexNumber, null, out byte value))
                {
                    bytes.Add(value);
                }
            }
        }

        return [.. bytes];
    }
}
