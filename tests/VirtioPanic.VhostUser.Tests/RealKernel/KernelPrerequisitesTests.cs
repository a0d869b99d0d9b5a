namespace VirtioPanic.VhostUser.Tests.RealKernel;

internal sealed class KernelPrerequisitesTests
{
    [Test]
    public void TryFind_ManifestNamingMissingFiles_ListsEachMissingPiece()
    {
        string dir = TestPaths.CreateTempDirectory("vp-prereq");
        try
        {
            string manifest = Path.Combine(dir, "kernel.env");
            File.WriteAllLines(manifest,
            [
                "KVER=0.0.0-test",
                $"KERNEL_ROOT={dir}/root",
                $"VMLINUX={dir}/vmlinux",
                "BUSYBOX=/nonexistent/busybox",
                "QEMU=/nonexistent/qemu",
                "MODPROBE=/nonexistent/modprobe",
            ]);

            KernelPrerequisites? found = KernelPrerequisites.TryFind(manifest, out List<string> missing);

            using (Assert.EnterMultipleScope())
            {
                Assert.That(found, Is.Null);
                Assert.That(missing, Has.Some.Contains("qemu-system-x86"));
                Assert.That(missing, Has.Some.Contains("busybox-static"));
                Assert.That(missing, Has.Some.Contains("kmod"));
                Assert.That(missing, Has.Some.Contains("linux-image-0.0.0-test"));
                Assert.That(missing, Has.Some.Contains("linux-headers-0.0.0-test"));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void TryFind_NoManifest_NamesTheScriptThatWritesIt()
    {
        KernelPrerequisites? found = KernelPrerequisites.TryFind("/nonexistent/kernel.env", out List<string> missing);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(found, Is.Null);
            Assert.That(missing, Has.One.Contains(".ci/prerequisites"));
        }
    }
}
