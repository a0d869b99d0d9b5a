namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>
/// What the real-kernel tests need on the host, found through the manifest that
/// <c>.ci/prerequisites</c> writes (<c>/var/cache/virtiopanic/kernel.env</c>, or
/// <c>$VIRTIOPANIC_CACHE/kernel.env</c>). When something is missing the script is run once (it
/// installs from Debian's packages); if that still does not provide everything, the test fails,
/// never skips, with a message naming each missing piece.
/// </summary>
internal sealed class KernelPrerequisites
{
    private static readonly Lock s_lock = new();
    private static KernelPrerequisites? s_found;
    private static string? s_failure;

    private KernelPrerequisites(IReadOnlyDictionary<string, string> values)
    {
        KernelVersion = values["KVER"];
        KernelRoot = values["KERNEL_ROOT"];
        Vmlinux = values["VMLINUX"];
        Busybox = values["BUSYBOX"];
        Qemu = values["QEMU"];
        Modprobe = values["MODPROBE"];
        Qemu11 = values["QEMU11"];
        Uml = values["UML"];
        UmlRelease = values["UML_RELEASE"];
        UmlModules = values["UML_MODULES"];
        UmlKbuild = values["UML_KBUILD"];
    }

    /// <summary>
    /// QEMU >= 10.2 from trixie-backports, unpacked by <c>.ci/prerequisites-qemu11</c>: a wrapper
    /// that runs it through its own loader (its PID is QEMU's). It has the generic
    /// <c>vhost-user-test-device(-pci)</c> that presents virtio ID 35.
    /// </summary>
    internal string Qemu11 { get; }

    /// <summary>Debian's User-Mode Linux kernel (<c>linux.uml</c>), unpacked by <c>.ci/prerequisites-uml</c>.</summary>
    internal string Uml { get; }

    /// <summary>The UML kernel's release (its <c>uname -r</c>, e.g. 6.1.176).</summary>
    internal string UmlRelease { get; }

    /// <summary>The UML package's own modules directory.</summary>
    internal string UmlModules { get; }

    /// <summary>linux-source of the UML package's Built-Using version, configured with its config and modules_prepare'd (ARCH=um).</summary>
    internal string UmlKbuild { get; }

    /// <summary>The kernel release, e.g. 6.1.0-56-amd64 (derived by the script, never hard-coded).</summary>
    internal string KernelVersion { get; }

    /// <summary>Where the linux-image package is unpacked (boot/ and lib/modules/ below it).</summary>
    internal string KernelRoot { get; }

    /// <summary>The uncompressed ELF kernel, booted through PVH (about 2 s faster than the bzImage under TCG).</summary>
    internal string Vmlinux { get; }

    /// <summary>The compressed bzImage of the same kernel (what kexec_file_load accepts), unpacked next to <see cref="Vmlinux"/>.</summary>
    internal string Vmlinuz => Path.Combine(KernelRoot, "boot", $"vmlinuz-{KernelVersion}");

    internal string Busybox { get; }

    internal string Qemu { get; }

    internal string Modprobe { get; }

    /// <summary>The kbuild tree of the matching linux-headers package, for out-of-tree guest modules.</summary>
    internal string HeadersBuildDirectory => $"/lib/modules/{KernelVersion}/build";

    internal string ModulesDirectory => Path.Combine(KernelRoot, "lib", "modules", KernelVersion);

    internal static string CacheDirectory => Environment.GetEnvironmentVariable("VIRTIOPANIC_CACHE") is { Length: > 0 } cache ? cache : "/var/cache/virtiopanic";

    /// <summary>Finds (installing if needed) the prerequisites, or fails the calling test.</summary>
    internal static KernelPrerequisites Require()
    {
        lock (s_lock)
        {
            if (s_found is not null)
            {
                return s_found;
            }

            if (s_failure is null)
            {
                s_found = TryFind(ManifestPath, out List<string> missing);
                if (s_found is null)
                {
                    string script = Path.Combine(TestPaths.RepositoryRoot(), ".ci", "prerequisites");
                    ProcessResult install = BoundedProcess.Run("bash", [script], TimeSpan.FromMinutes(15));
                    s_found = TryFind(ManifestPath, out missing);
                    if (s_found is null)
                    {
                        s_failure = "Real-kernel test prerequisites are missing: " + string.Join("; ", missing)
                            + $". Running {script} did not provide them ({install}).";
                    }
                }
            }

            if (s_found is null)
            {
                Assert.Fail(s_failure ?? "real-kernel prerequisites missing");
            }

            return s_found!;
        }
    }

    internal static string ManifestPath => Path.Combine(CacheDirectory, "kernel.env");

    internal static KernelPrerequisites? TryFind(string manifest, out List<string> missing)
    {
        missing = [];
        if (!File.Exists(manifest))
        {
            missing.Add($"manifest {manifest} (written by .ci/prerequisites)");
            return null;
        }

        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in File.ReadAllLines(manifest))
        {
            int eq = line.IndexOf('=', StringComparison.Ordinal);
            if (!line.StartsWith('#') && eq > 0)
            {
                values[line[..eq]] = line[(eq + 1)..];
            }
        }

        foreach (string key in (string[])["KVER", "KERNEL_ROOT", "VMLINUX", "BUSYBOX", "QEMU", "MODPROBE", "QEMU11", "UML", "UML_RELEASE", "UML_MODULES", "UML_KBUILD"])
        {
            if (!values.ContainsKey(key))
            {
                missing.Add($"{key} in {manifest}");
            }
        }

        if (missing.Count > 0)
        {
            return null;
        }

        var found = new KernelPrerequisites(values);
        CheckFile(missing, found.Qemu, "QEMU (Debian package qemu-system-x86)");
        CheckFile(missing, found.Busybox, "static busybox (busybox-static)");
        CheckFile(missing, found.Modprobe, "modprobe (kmod)");
        CheckFile(missing, found.Vmlinux, $"kernel {found.KernelVersion} vmlinux (linux-image-{found.KernelVersion}, unpacked)");
        CheckFile(missing, Path.Combine(found.ModulesDirectory, "modules.dep"), $"modules.dep of {found.KernelVersion}");
        CheckFile(missing, Path.Combine(found.HeadersBuildDirectory, "Makefile"), $"linux-headers-{found.KernelVersion}");
        CheckFile(missing, found.Qemu11, "QEMU >= 10.2 (qemu-system-x86 from trixie-backports, unpacked by .ci/prerequisites-qemu11)");
        CheckFile(missing, found.Uml, "User-Mode Linux (user-mode-linux, unpacked by .ci/prerequisites-uml)");
        CheckFile(missing, Path.Combine(found.UmlKbuild, "scripts", "mod", "modpost"), $"UML kbuild tree (linux-source-6.1 for {found.UmlRelease}, prepared by .ci/prerequisites-uml)");
        foreach (string tool in (string[])["cpio", "gzip", "make", "gcc"])
        {
            if (TestPaths.FindOnPath(tool) is null)
            {
                missing.Add($"{tool} on PATH");
            }
        }

        return missing.Count == 0 ? found : null;
    }

    private static void CheckFile(List<string> missing, string path, string what)
    {
        if (!File.Exists(path))
        {
            missing.Add($"{what} at {path}");
        }
    }
}
