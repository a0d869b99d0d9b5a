namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>
/// Builds an out-of-tree kernel module against the headers that match the test kernel
/// (<c>make -C /lib/modules/KVER/build M=DIR modules</c>, about 1-2 s). Sources are copied to a
/// scratch directory first, so the source tree stays clean; results are cached per process by
/// source directory and defines.
/// </summary>
internal static class GuestModuleBuilder
{
    private static readonly Lock s_lock = new();
    private static readonly Dictionary<string, string> s_built = new(StringComparer.Ordinal);
    private static string? s_root;

    /// <summary>Builds <c>NAME.ko</c> from the <c>NAME.c</c> (and any other files) in <paramref name="sourceDirectory"/>.</summary>
    /// <param name="kernel">The test kernel.</param>
    /// <param name="sourceDirectory">Directory holding the module's sources.</param>
    /// <param name="moduleName">The module name (its main source is <c>moduleName.c</c>).</param>
    /// <param name="defines">Preprocessor definitions, e.g. <c>DEBUG=1</c>.</param>
    /// <returns>The path of the built <c>.ko</c>.</returns>
    internal static string Build(KernelPrerequisites kernel, string sourceDirectory, string moduleName, params string[] defines)
    {
        string cflags = string.Join(' ', defines.Select(d => "-D" + d));
        return BuildCore(kernel.HeadersBuildDirectory, sourceDirectory, moduleName, $"obj-m := {moduleName}.o\nccflags-y := {cflags}\n", []);
    }

    /// <summary>
    /// Builds a module whose source directory has its own <c>Kbuild</c> (the reference driver in
    /// <c>src/guest/linux</c>), passing <paramref name="makeVariables"/> (<c>NAME=value</c>) on the
    /// make command line. Compiler warnings fail the build when that Kbuild says so.
    /// </summary>
    /// <returns>The path of the built <c>.ko</c>.</returns>
    internal static string BuildWithOwnKbuild(KernelPrerequisites kernel, string sourceDirectory, string moduleName, params string[] makeVariables) =>
        BuildCore(kernel.HeadersBuildDirectory, sourceDirectory, moduleName, kbuild: null, makeVariables);

    /// <summary>
    /// Builds a module with its own <c>Kbuild</c> for User-Mode Linux: against the linux-source
    /// tree that <c>.ci/prerequisites-uml</c> configured with the UML package's config, with
    /// <c>ARCH=um</c>.
    /// </summary>
    /// <returns>The path of the built <c>.ko</c>.</returns>
    internal static string BuildForUml(KernelPrerequisites kernel, string sourceDirectory, string moduleName, params string[] makeVariables) =>
        BuildCore(kernel.UmlKbuild, sourceDirectory, moduleName, kbuild: null, ["ARCH=um", .. makeVariables]);

    /// <summary>Compiles a static guest program (one C file, glibc's <c>libc.a</c>) for the busybox initramfs.</summary>
    /// <param name="source">The C source file.</param>
    /// <returns>The path of the executable.</returns>
    internal static string BuildStaticProgram(string source)
    {
        string name = Path.GetFileNameWithoutExtension(source);
        lock (s_lock)
        {
            string key = $"program|{Path.GetFullPath(source)}";
            if (s_built.TryGetValue(key, out string? cached) && File.Exists(cached))
            {
                return cached;
            }

            s_root ??= TestPaths.CreateTempDirectory("vp-kmod");
            string output = Path.Combine(s_root, $"{name}-{s_built.Count}");
            ProcessResult cc = BoundedProcess.Run("gcc", ["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", output, source], TimeSpan.FromMinutes(2));
            if (!cc.Succeeded || !File.Exists(output))
            {
                throw new InvalidOperationException($"building guest program {name} failed (gcc and libc6-dev's static libc are needed): {cc}");
            }

            s_built[key] = output;
            return output;
        }
    }

    private static string BuildCore(string kbuildDirectory, string sourceDirectory, string moduleName, string? kbuild, string[] makeVariables)
    {
        string key = $"{kbuildDirectory}|{Path.GetFullPath(sourceDirectory)}|{moduleName}|{kbuild}|{string.Join(',', makeVariables)}";
        lock (s_lock)
        {
            if (s_built.TryGetValue(key, out string? cached) && File.Exists(cached))
            {
                return cached;
            }

            s_root ??= TestPaths.CreateTempDirectory("vp-kmod");
            string build = Path.Combine(s_root, $"{moduleName}-{s_built.Count}");
            Directory.CreateDirectory(build);
            foreach (string file in Directory.EnumerateFiles(sourceDirectory))
            {
                File.Copy(file, Path.Combine(build, Path.GetFileName(file)), overwrite: true);
            }

            if (kbuild is not null)
            {
                File.WriteAllText(Path.Combine(build, "Kbuild"), kbuild);
            }

            ProcessResult make = BoundedProcess.Run("make", ["-C", kbuildDirectory, $"M={build}", .. makeVariables, "modules"], TimeSpan.FromMinutes(3));
            string ko = Path.Combine(build, moduleName + ".ko");
            if (!make.Succeeded || !File.Exists(ko))
            {
                throw new InvalidOperationException($"building guest module {moduleName} failed: {make}");
            }

            TestContext.Out.WriteLine($"built guest module {moduleName} ({string.Join(' ', makeVariables)})");
            s_built[key] = ko;
            return ko;
        }
    }

    /// <summary>Deletes every module built by this process (run once, after all tests).</summary>
    internal static void DeleteBuilds()
    {
        lock (s_lock)
        {
            if (s_root is not null && Directory.Exists(s_root))
            {
                Directory.Delete(s_root, recursive: true);
            }

            s_root = null;
            s_built.Clear();
        }
    }

    /// <summary>The directory of guest sources shipped with the tests (<c>RealKernel/Guest/NAME</c>).</summary>
    internal static string GuestSource(string name) => Path.Combine(AppContext.BaseDirectory, "RealKernel", "Guest", name);
}
