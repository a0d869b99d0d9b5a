namespace VirtioPanic.Hosting.Journal;

// Owner-only files and directories: the journal holds guest panic messages and kernel-log tails,
// dumps hold all of guest memory (VirtioPanicOptions promises 0600 files and 0700 directories).
internal static class JournalFiles
{
    internal const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    internal const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    // Creates the directory and every missing parent owner-only (Directory.CreateDirectory with a
    // mode applies it to the last one only); existing ones are left as they are.
    internal static void CreateDirectory(string directory)
    {
        if (Directory.Exists(directory))
        {
            return;
        }

        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(directory);
            return;
        }

        var missing = new Stack<string>();
        for (string? current = Path.GetFullPath(directory); !string.IsNullOrEmpty(current) && !Directory.Exists(current); current = Path.GetDirectoryName(current))
        {
            missing.Push(current);
        }

        while (missing.TryPop(out string? next))
        {
            Directory.CreateDirectory(next, DirectoryMode);
        }
    }

    // Opens for appending (creating 0600 if missing); a file found with more than owner access is narrowed.
    internal static FileStream Open(string path, System.IO.FileMode mode)
    {
        var options = new FileStreamOptions
        {
            Mode = mode,
            Access = FileAccess.ReadWrite,
            Share = FileShare.Read,
            BufferSize = 0,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = FileMode;
        }

        var stream = new FileStream(path, options);
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(stream.SafeFileHandle) & ~FileMode) != 0)
        {
            try
            {
                File.SetUnixFileMode(stream.SafeFileHandle, FileMode);
            }
            catch (UnauthorizedAccessException)
            {
                // Another user's file we may write: narrowing it is its owner's call, not a reason to run without a journal.
            }
        }

        return stream;
    }
}
