using System.Diagnostics;
using System.Text;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>
/// Child processes for the real-kernel tests, each bounded in time: a process still running at its
/// deadline is killed by its own PID (never by name), and the caller learns that it timed out.
/// </summary>
internal static class BoundedProcess
{
    internal static ProcessResult Run(string fileName, IEnumerable<string> arguments, TimeSpan timeout, string? workingDirectory = null, IDictionary<string, string>? environment = null)
    {
        using Process process = Start(fileName, arguments, workingDirectory, environment, redirect: true);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, e) => Append(stdout, e.Data);
        process.ErrorDataReceived += (_, e) => Append(stderr, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        bool exited = process.WaitForExit(timeout);
        if (!exited)
        {
            Kill(process);
        }

        process.WaitForExit();
        lock (stdout)
        {
            lock (stderr)
            {
                return new ProcessResult(exited ? process.ExitCode : -1, !exited, stdout.ToString(), stderr.ToString());
            }
        }
    }

    internal static Process Start(string fileName, IEnumerable<string> arguments, string? workingDirectory, IDictionary<string, string>? environment, bool redirect)
    {
        var info = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = redirect,
            RedirectStandardError = redirect,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        if (environment is not null)
        {
            foreach ((string key, string value) in environment)
            {
                info.Environment[key] = value;
            }
        }

        Process process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {fileName}");
        process.StandardInput.Close();
        return process;
    }

    /// <summary>Kills the process by its PID (not its tree, not by name) and waits for it.</summary>
    internal static void Kill(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: false);
            }
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }

        _ = process.WaitForExit(TimeSpan.FromSeconds(10));
    }

    private static void Append(StringBuilder builder, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (builder)
        {
            builder.AppendLine(line);
        }
    }
}

internal readonly record struct ProcessResult(int ExitCode, bool TimedOut, string StandardOutput, string StandardError)
{
    internal bool Succeeded => !TimedOut && ExitCode == 0;

    public override string ToString() => $"exit {ExitCode}{(TimedOut ? " (timed out, killed)" : string.Empty)}\n{StandardOutput}\n{StandardError}";
}
