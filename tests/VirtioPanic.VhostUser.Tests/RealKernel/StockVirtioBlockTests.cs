using VirtioPanic.VhostUser.Tests.Devices;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

// Linux's own virtio_blk driver over QEMU 7.2's vhost-user-blk-pci and our back end. virtio-rng
// posts one buffer per request, so Linux never uses an indirect table for it; virtio_blk's
// header + data + status requests are where a real driver's indirect descriptors show up.
internal sealed class StockVirtioBlockTests : RealKernelTest
{
    private const int Sector = 5;

    [Test]
    public async Task BlockRead_StockDriverOverVhostUserBlk_ReadsTheDiskThroughIndirectTables()
    {
        var device = new BlockTestDevice();
        string initramfs = WorkPath("initramfs.cpio.gz");
        NewInitramfs()
            .AddModule("virtio_pci")
            .AddModule("virtio_blk")
            .AddAction("read", $"""
                echo "VP-SIZE $(cat /sys/block/vda/size)"
                dd if=/dev/vda bs=512 skip={Sector} count=1 2>/dev/null | od -An -tx1 -v | sed 's/^/VP-HEX /'
                """)
            .Build(initramfs);

        await using var host = new VhostUserBackendHost(device, WorkPath("blk.sock"));
        QemuRun run = await BootAsync(new QemuMachineOptions
        {
            Action = "read",
            Initramfs = initramfs,
            VhostUserDevices = [("vhost-user-blk-pci", host.SocketPath)],
        });

        byte[] guest = StockVirtioRngTests.GuestHex(run);
        byte[] expected = [.. Enumerable.Range(0, 512).Select(i => BlockTestDevice.DiskByte((ulong)((Sector * 512) + i)))];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.ActionCompleted, Is.True, run.ToString());
            Assert.That(run.SerialLog, Does.Contain($"VP-SIZE {BlockTestDevice.CapacitySectors}"), "capacity read from the configuration (GET_CONFIG)");
            Assert.That(guest, Is.EqualTo(expected), run.ToString());
            Assert.That(host.Backend.Statistics.NegotiatedFeatures & VirtioFeatures.IndirectDescriptors, Is.Not.Zero, "INDIRECT_DESC negotiated");
            Assert.That(device.IndirectChains, Is.GreaterThan(0), $"indirect tables from the real driver ({device.Requests} requests)");
        }

        TestContext.Out.WriteLine($"requests {device.Requests}, indirect {device.IndirectChains}");
    }
}
