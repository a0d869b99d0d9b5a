using System.Text;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>
/// Builds a busybox initramfs for one guest run: static busybox, the Debian kernel's modules a
/// test names (with their dependencies, resolved on the host by
/// <c>modprobe -S KVER --show-depends</c>), any out-of-tree <c>.ko</c> files, and a set of named
/// actions. The guest's <c>/init</c> mounts proc/sys/dev, loads the modules in order, runs the
/// action named by <c>vp.action=WORD</c> on the kernel command line, and powers off.
/// </summary>
/// <remarks>
/// <para>Serial markers (matched anywhere in a line, since the console can interleave):</para>
/// <list type="bullet">
/// <item><c>VP-INIT</c> once /init runs; <c>VP-INSMOD-FAILED name</c> for a module that did not load;</item>
/// <item><c>VP-ACTION-BEGIN word</c>, the action's own output, <c>VP-ACTION-STATUS n</c>, <c>VP-ACTION-END word</c>;</item>
/// <item><c>VP-POWEROFF</c> just before <c>poweroff -f</c>.</item>
/// </list>
/// <para>Actions are shell scripts run by busybox sh, with busybox applets on PATH; they can read
/// further <c>vp.*</c> words from <c>/proc/cmdline</c>. An action that panics the kernel simply
/// never reaches its end marker.</para>
/// </remarks>
internal sealed class InitramfsBuilder
{
    private readonly KernelPrerequisites _kernel;
    private readonly List<string> _modules = [];            // load order, host paths
    private readonly Dictionary<string, string> _parameters = new(StringComparer.Ordinal);   // host path -> insmod parameters
    private readonly Dictionary<string, string> _actions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (byte[] Content, string Mode)> _files = new(StringComparer.Ordinal);

    internal InitramfsBuilder(KernelPrerequisites kernel)
    {
        _kernel = kernel;
    }

    /// <summary>Adds a module of the Debian kernel and, before it, every module it depends on.</summary>
    internal InitramfsBuilder AddModule(string name)
    {
        ProcessResult result = BoundedProcess.Run(
            _kernel.Modprobe,
            ["-d", _kernel.KernelRoot, "-S", _kernel.KernelVersion, "--show-depends", "--ignore-install", name],
            TimeSpan.FromSeconds(30));
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"modprobe could not resolve module {name}: {result}");
        }

        foreach (string line in result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            // "insmod /path/to/mod.ko [params]"; "builtin name" needs nothing.
            if (line.StartsWith("insmod ", StringComparison.Ordinal))
            {
                string path = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
                if (!_modules.Contains(path))
                {
                    _modules.Add(path);
                }
            }
        }

        return this;
    }

    /// <summary>Adds an out-of-tree module (built against the matching headers); it loads after the Debian modules added before it.</summary>
    /// <param name="koPath">The built module.</param>
    /// <param name="parameters">Module parameters for insmod (e.g. <c>events=0 nowayout=0</c>), or null.</param>
    internal InitramfsBuilder AddKernelObject(string koPath, string? parameters = null)
    {
        if (!File.Exists(koPath))
        {
            throw new FileNotFoundException("kernel module not found", koPath);
        }

        string path = Path.GetFullPath(koPath);
        _modules.Add(path);
        if (!string.IsNullOrWhiteSpace(parameters))
        {
            _parameters[path] = parameters.Trim();
        }

        return this;
    }

    /// <summary>Adds an action: a shell script the guest runs when booted with <c>vp.action=<paramref name="word"/></c>.</summary>
    internal InitramfsBuilder AddAction(string word, string script)
    {
        if (word.Length == 0 || !word.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            throw new ArgumentException("An action word is letters, digits, '-' and '_'.", nameof(word));
        }

        _actions[word] = script;
        return this;
    }

    /// <summary>Adds a file (path inside the guest, absolute).</summary>
    internal InitramfsBuilder AddFile(string guestPath, byte[] content, string mode = "0644")
    {
        _files[guestPath.TrimStart('/')] = (content, mode);
        return this;
    }

    /// <summary>Writes the gzip-compressed newc cpio archive to <paramref name="outputPath"/>.</summary>
    internal void Build(string outputPath)
    {
        string staging = TestPaths.CreateTempDirectory("vp-initramfs");
        try
        {
            foreach (string dir in (string[])["bin", "dev", "proc", "sys", "tmp", "etc", "actions", "lib/modules"])
            {
                Directory.CreateDirectory(Path.Combine(staging, dir));
            }

            File.Copy(_kernel.Busybox, Path.Combine(staging, "bin", "busybox"));
            var load = new StringBuilder();
            for (int i = 0; i < _modules.Count; i++)
            {
                // Numbered flat names keep the load order and avoid clashes between same-named modules.
                string name = $"{i:D2}-{Path.GetFileName(_modules[i])}";
                File.Copy(_modules[i], Path.Combine(staging, "lib", "modules", name));
                load.Append(name);
                if (_parameters.TryGetValue(_modules[i], out string? parameters))
                {
                    load.Append(' ').Append(parameters);
                }

                load.Append('\n');
            }

            File.WriteAllText(Path.Combine(staging, "etc", "modules.load"), load.ToString());
            foreach ((string word, string script) in _actions)
            {
                WriteExecutable(Path.Combine(staging, "actions", word), "#!/bin/sh\n" + script.ReplaceLineEndings("\n") + "\n");
            }

            foreach ((string path, (byte[] content, string mode)) in _files)
            {
                string target = Path.Combine(staging, path);
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.WriteAllBytes(target, content);
                File.SetUnixFileMode(target, (UnixFileMode)Convert.ToInt32(mode, 8));
            }

            WriteExecutable(Path.Combine(staging, "init"), InitScript);
            File.SetUnixFileMode(Path.Combine(staging, "bin", "busybox"), (UnixFileMode)Convert.ToInt32("0755", 8));

            ProcessResult pack = BoundedProcess.Run(
                "sh",
                ["-c", "find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1 > \"$0\"", Path.GetFullPath(outputPath)],
                TimeSpan.FromSeconds(60),
                workingDirectory: staging);
            if (!pack.Succeeded)
            {
                throw new InvalidOperationException($"packing the initramfs failed: {pack}");
            }
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }
    }

    private static void WriteExecutable(string path, string content)
    {
        File.WriteAllText(path, content);
        File.SetUnixFileMode(path, (UnixFileMode)Convert.ToInt32("0755", 8));
    }

    // Markers are printed on lines of their own, but may still share a console line with kernel
    // output; the host matches them anywhere in a line.
    private const string InitScript = """
        #!/bin/busybox sh
        /bin/busybox mount -t proc proc /proc
        /bin/busybox mount -t sysfs sysfs /sys
        /bin/busybox mount -t devtmpfs devtmpfs /dev
        /bin/busybox --install -s /bin
        export PATH=/bin
        echo "VP-INIT"
        while read -r m args; do
            insmod "/lib/modules/$m" $args || echo "VP-INSMOD-FAILED $m"
        done < /etc/modules.load
        action=""
        for word in $(cat /proc/cmdline); do
            case "$word" in vp.action=*) action="${word#vp.action=}" ;; esac
        done
        echo "VP-ACTION-BEGIN $action"
        if [ -n "$action" ] && [ -x "/actions/$action" ]; then
            "/actions/$action"
            echo "VP-ACTION-STATUS $?"
        else
            echo "VP-ACTION-UNKNOWN $action"
        fi
        echo "VP-ACTION-END $action"
        echo "VP-POWEROFF"
        poweroff -f
        """;
}
