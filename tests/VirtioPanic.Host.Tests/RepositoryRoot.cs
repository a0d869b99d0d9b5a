namespace VirtioPanic.Host.Tests;

// The checkout this test build came from: the first directory above the test binaries that holds VirtioPanic.sln.
internal static class RepositoryRoot
{
    public static string Find()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "VirtioPanic.sln")))
            {
                return d.FullName;
            }
        }

        throw new InvalidOperationException("repository root (VirtioPanic.sln) not found above " + AppContext.BaseDirectory);
    }
}
