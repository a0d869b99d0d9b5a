namespace VirtioPanic.VhostUser.Tests.RealKernel;

internal static class TestPaths
{
    internal static string RepositoryRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "VirtioPanic.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        return dir ?? throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }

    internal static string? FindOnPath(string tool)
    {
        string path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        foreach (string dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]))
        {
            string candidate = Path.Combine(dir, tool);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>A fresh directory under /tmp, short enough for Unix socket paths (108 bytes).</summary>
    internal static string CreateTempDirectory(string prefix) => Directory.CreateTempSubdirectory(prefix + "-").FullName;
}
