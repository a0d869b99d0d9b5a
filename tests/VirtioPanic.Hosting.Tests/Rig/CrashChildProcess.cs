using System.Diagnostics;
using System.Reflection;

namespace VirtioPanic.Hosting.Tests.Rig;

// VirtioPanic.Hosting.CrashChild (copied next to the tests), run on the tests' own runtime
// configuration and dependencies; always killed by its own PID, with bounded waits.
internal static class CrashChildProcess
{
    internal static Process Start(params string[] args)
    {
        string bin = AppContext.BaseDirectory;
        string tests = Path.GetFileNameWithoutExtension(Assembly.GetExecutingAssembly().Location);
        var start = new ProcessStartInfo(DotNetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { "exec", "--runtimeconfig", Path.Combine(bin, tests + ".runtimeconfig.json"), "--depsfile", Path.Combine(bin, tests + ".deps.json"), Path.Combine(bin, "VirtioPanic.Hosting.CrashChild.dll") }.Concat(args))
        {
            start.ArgumentList.Add(arg);
        }

        return Process.Start(start)!;
    }

    // Reads one line of the child's output, failing (with its stderr) after a bounded wait.
    internal static async Task<string> ReadLineAsync(Process child, TimeSpan timeout)
    {
        Task<string?> line = child.StandardOutput.ReadLineAsync();
        Task done = await Task.WhenAny(line, Task.Delay(timeout));
        if (done != line || await line is not string text)
        {
            KillAndWait(child);
            Assert.Fail("the child did not answer: " + await child.StandardError.ReadToEndAsync());
            throw new InvalidOperationException();
        }

        return text;
    }

    // SIGKILL (Process.Kill on Unix) by the child's own PID, then a bounded wait for it to go.
    internal static void KillAndWait(Process child)
    {
        if (!child.HasExited)
        {
            child.Kill(entireProcessTree: false);
        }

        Assert.That(child.WaitForExit(TimeSpan.FromSeconds(10)), Is.True, $"child {child.Id} did not exit");
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
