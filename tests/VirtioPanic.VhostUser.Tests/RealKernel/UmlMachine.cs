using System.Diagnostics;
using System.Text;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>
/// Runs Debian's User-Mode Linux kernel (a 6.1 kernel as a host process) with a busybox initramfs
/// and vhost-user sockets attached as virtio devices (<c>virtio_uml.device=SOCKET:ID</c>). Its
/// console (stdout) and early messages (stderr) make the serial log. A panic ends the process with
/// SIGABRT after the panic notifiers ran (UML has no <c>panic=-1</c> reboot here: a reboot would
/// re-execute the kernel); <c>poweroff -f</c> ends it with status 0. Every run is bounded by
/// <see cref="UmlMachineOptions.Timeout"/> and the process is killed by its PID when it overruns.
/// </summary>
internal static class UmlMachine
{
    internal static async Task<QemuRun> RunAsync(KernelPrerequisites kernel, UmlMachineOptions options, string workDirectory, CancellationToken cancellationToken = default)
    {
        string serialPath = Path.Combine(workDirectory, "serial.log");
        var arguments = new List<string>
        {
            $"mem={options.MemoryMiB}M",
            $"initrd={options.Initramfs}",
            "con=null",
            "con0=null,fd:1",
            "quiet",
            "loglevel=4",
            $"vp.action={options.Action}",
        };
        arguments.AddRange(options.VirtioDevices.Select(d => $"virtio_uml.device={d.SocketPath}:{d.DeviceId}"));
        arguments.AddRange(options.KernelArguments);

        var output = new StringBuilder();
        var stopwatch = Stopwatch.StartNew();
        // UML keeps its guest memory in an unlinked file under TMPDIR: the run's own directory.
        using Process uml = BoundedProcess.Start(kernel.Uml, arguments, workDirectory, new Dictionary<string, string> { ["TMPDIR"] = workDirectory }, redirect: true);
        uml.OutputDataReceived += (_, e) => Append(output, e.Data);
        uml.ErrorDataReceived += (_, e) => Append(output, e.Data);
        uml.BeginOutputReadLine();
        uml.BeginErrorReadLine();

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(options.Timeout);
        bool timedOut = false;
        try
        {
            await uml.WaitForExitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            timedOut = true;
            BoundedProcess.Kill(uml);
        }

        uml.WaitForExit();
        stopwatch.Stop();
        string serial;
        lock (output)
        {
            serial = output.ToString();
        }

        await File.WriteAllTextAsync(serialPath, serial, CancellationToken.None).ConfigureAwait(false);
        return new QemuRun(timedOut ? -1 : uml.ExitCode, timedOut, serial, string.Empty, [], stopwatch.Elapsed, serialPath);
    }

    private static void Append(StringBuilder builder, string? line)
    {
        if (line is not null)
        {
            lock (builder)
            {
                builder.AppendLine(line);
            }
        }
    }
}

/// <summary>One User-Mode Linux run.</summary>
internal sealed class UmlMachineOptions
{
    /// <summary>The action word passed as <c>vp.action=</c> (see <see cref="InitramfsBuilder"/>).</summary>
    internal required string Action { get; init; }

    internal required string Initramfs { get; init; }

    /// <summary>vhost-user sockets attached as virtio devices of the given IDs.</summary>
    internal IReadOnlyList<(string SocketPath, uint DeviceId)> VirtioDevices { get; init; } = [];

    internal IReadOnlyList<string> KernelArguments { get; init; } = [];

    internal int MemoryMiB { get; init; } = 256;

    /// <summary>Wall-clock limit for the whole run; the process is killed by PID when it is exceeded. Boots take about 2 s.</summary>
    internal TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(90);
}
