using System.Diagnostics;
using System.Text;

namespace VirtioPanic.Host.Tests;

// Runs the host program (copied next to the tests) as a child process, bounded in time and killed
// by its own PID when it overstays.
internal sealed class HostProcess : IDisposable
{
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _error = new();

    private HostProcess(Process process)
    {
        Process = process;
        process.OutputDataReceived += (_, e) => Append(_output, e.Data);
        process.ErrorDataReceived += (_, e) => Append(_error, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public Process Process { get; }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public string Error
    {
        get
        {
            lock (_error)
            {
                return _error.ToString();
            }
        }
    }

    public static HostProcess Start(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        string bin = AppContext.BaseDirectory;
        var start = new ProcessStartInfo(DotNetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = bin,
        };
        start.ArgumentList.Add("exec");
        start.ArgumentList.Add(Path.Combine(bin, "VirtioPanic.Host.dll"));
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (KeyValuePair<string, string> pair in environment ?? new Dictionary<string, string>())
        {
            start.Environment[pair.Key] = pair.Value;
        }

        return new HostProcess(Process.Start(start)!);
    }

    // Runs to completion (or kills it after the limit) and returns the exit code.
    public static (int ExitCode, string Output, string Error) Run(TimeSpan limit, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        using HostProcess host = Start(environment, args);
        int code = host.WaitForExit(limit);
        return (code, host.Output, host.Error);
    }

    public int WaitForExit(TimeSpan limit)
    {
        if (!Process.WaitForExit(limit))
        {
            Kill();
            Assert.Fail($"the host program (PID {Process.Id}) did not exit within {limit}; output so far:\n{Output}\n{Error}");
        }

        Process.WaitForExit();
        return Process.ExitCode;
    }

    // SIGTERM, as a service manager sends it (Ctrl-C's SIGINT takes the same path through the host's
    // console lifetime, but a shell ignores SIGINT for background children, so tests cannot rely on it).
    public void Terminate()
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-TERM", Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        Assert.That(kill.WaitForExit(TimeSpan.FromSeconds(10)) && kill.ExitCode == 0, Is.True, "kill -TERM failed");
    }

    public void Kill()
    {
        if (!Process.HasExited)
        {
            Process.Kill(entireProcessTree: false);
            Process.WaitForExit(TimeSpan.FromSeconds(10));
        }
    }

    public void Dispose()
    {
        Kill();
        Process.Dispose();
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

    private static string DotNetHost()
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
        {
            return host;
        }

        string? process = Environment.ProcessPath;
        return process is not null && Path.GetFileNameWithoutExtension(process) == "dotnet" ? process : "dotnet";
    }
}
