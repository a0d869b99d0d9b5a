using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>
/// Runs QEMU (Debian 12's 7.2, or the unpacked QEMU 11 for virtio ID 35) with the Debian kernel under TCG (KVM cannot run a Linux guest on these
/// machines): <c>-m 512</c> backed by a shared memfd (vhost-user back ends map guest RAM from it),
/// <c>-no-reboot</c> (a panic or reboot ends the run), the serial console written to a file, an
/// optional QMP socket. Every run is bounded by <see cref="QemuMachineOptions.Timeout"/> and QEMU
/// is killed by its PID when it overruns.
/// </summary>
internal static class QemuMachine
{
    internal static async Task<QemuRun> RunAsync(KernelPrerequisites kernel, QemuMachineOptions options, string workDirectory, CancellationToken cancellationToken = default)
    {
        string serialPath = Path.Combine(workDirectory, "serial.log");
        string qmpPath = Path.Combine(workDirectory, "qmp.sock");
        var arguments = new List<string>
        {
            "-accel", "tcg",
            "-m", options.MemoryMiB.ToString(CultureInfo.InvariantCulture),
            "-smp", options.Cpus.ToString(CultureInfo.InvariantCulture),
            "-nodefaults",
            "-display", "none",
            "-object", $"memory-backend-memfd,id=mem,size={options.MemoryMiB}M,share=on",
            "-machine", $"{options.Machine},memory-backend=mem",
            "-serial", $"file:{serialPath}",
            "-kernel", kernel.Vmlinux,
            "-initrd", options.Initramfs,
            "-append", string.Join(' ', ["console=ttyS0", "panic=-1", "quiet", "loglevel=4", $"vp.action={options.Action}", .. options.KernelArguments]),
        };

        if (options.NoReboot)
        {
            arguments.Add("-no-reboot");
        }

        for (int i = 0; i < options.VhostUserDevices.Count; i++)
        {
            (string device, string socket) = options.VhostUserDevices[i];
            arguments.AddRange(["-chardev", $"socket,id=vu{i},path={socket}", "-device", $"{device},chardev=vu{i}"]);
        }

        foreach (string device in options.Devices)
        {
            arguments.AddRange(["-device", device]);
        }

        if (options.Qmp)
        {
            arguments.AddRange(["-qmp", $"unix:{qmpPath},server=on,wait=off"]);
        }

        arguments.AddRange(options.ExtraArguments);

        var output = new StringBuilder();
        var stopwatch = Stopwatch.StartNew();
        using Process qemu = BoundedProcess.Start(options.QemuBinary ?? kernel.Qemu, arguments, workDirectory, environment: null, redirect: true);
        qemu.OutputDataReceived += (_, e) => Append(output, e.Data);
        qemu.ErrorDataReceived += (_, e) => Append(output, e.Data);
        qemu.BeginOutputReadLine();
        qemu.BeginErrorReadLine();

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(options.Timeout);
        List<string> events = [];
        Task qmpTask = options.Qmp ? CollectQmpEventsAsync(qmpPath, events, deadline.Token) : Task.CompletedTask;

        bool timedOut = false;
        try
        {
            await qemu.WaitForExitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            timedOut = true;
            BoundedProcess.Kill(qemu);
        }

        qemu.WaitForExit();
        stopwatch.Stop();
        try
        {
            await qmpTask.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException or SocketException or IOException)
        {
            // The monitor closes with QEMU; what arrived is kept.
        }

        string serial = File.Exists(serialPath) ? await File.ReadAllTextAsync(serialPath, CancellationToken.None).ConfigureAwait(false) : string.Empty;
        string[] eventSnapshot;
        lock (events)
        {
            eventSnapshot = [.. events];
        }

        string qemuOutput;
        lock (output)
        {
            qemuOutput = output.ToString();
        }

        return new QemuRun(timedOut ? -1 : qemu.ExitCode, timedOut, serial, qemuOutput, eventSnapshot, stopwatch.Elapsed, serialPath);
    }

    // QMP: read the greeting, enter command mode, then record every line that is an event.
    private static async Task CollectQmpEventsAsync(string path, List<string> events, CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
                break;
            }
            catch (SocketException) when (attempt < 200)
            {
                await Task.Delay(25, cancellationToken).ConfigureAwait(false);
            }
        }

        await using var stream = new NetworkStream(socket, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
        _ = await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false);
        await writer.WriteLineAsync("{\"execute\":\"qmp_capabilities\"}".AsMemory(), cancellationToken).ConfigureAwait(false);
        while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
        {
            if (line.Contains("\"event\"", StringComparison.Ordinal))
            {
                lock (events)
                {
                    events.Add(line);
                }
            }
        }
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
