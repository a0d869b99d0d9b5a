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
                "QEMU11=/nonexistent/qemu11",
                "UML=/nonexistent/linux.uml",
                "UML_RELEASE=0.0.0",
                "UML_MODULES=/nonexistent/modules",
                "UML_KBUILD=/nonexistent/kbuild",
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
                Assert.That(missing, Has.Some.Contains("trixie-backports"));
                Assert.That(missing, Has.Some.Contains("user-mode-linux"));
                Assert.That(missing, Has.Some.Contains("linux-source-6.1"));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void TryFind_ManifestWithoutTheId35FrontEnds_NamesTheirKeys()
    {
        // A manifest written by a .ci/prerequisites that predates QEMU 11 and UML: the keys are
        // named, so the test run reruns the script, which adds them.
        string dir = TestPaths.CreateTempDirectory("vp-prereq");
        try
        {
            string manifest = Path.Combine(dir, "kernel.env");
            File.WriteAllLines(manifest, ["KVER=0.0.0-test", $"KERNEL_ROOT={dir}", $"VMLINUX={dir}/vmlinux", "BUSYBOX=/b", "QEMU=/q", "MODPROBE=/m"]);

            KernelPrerequisites? found = KernelPrerequisites.TryFind(manifest, out List<string> missing);

            using (Assert.EnterMultipleScope())
            {
                Assert.That(found, Is.Null);
                Assert.That(missing, Has.Some.StartsWith("QEMU11 in"));
                Assert.That(missing, Has.Some.StartsWith("UML_KBUILD in"));
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
