namespace VirtioPanic.Hosting.Journal;

// Where the journal lives and how it rotates (from VirtioPanicOptions).
internal sealed record JournalSettings(string Path, long MaxFileSize, int MaxFiles)
{
    internal static JournalSettings From(VirtioPanicOptions options) =>
        new(System.IO.Path.GetFullPath(options.JournalPath), options.JournalMaxFileSize, options.JournalMaxFiles);

    // Rotated files: Path.1 (newest) .. Path.MaxFiles (oldest).
    internal string Rotated(int index) => Path + "." + index.ToString(System.Globalization.CultureInfo.InvariantCulture);

    // The next active file while a rotation writes it; complete (fsynced) before any rename.
    internal string Next => Path + ".new";

    // How much of the active file start-up reads, from its end: every file the journal writes fits
    // (rotation keeps it within MaxFileSize + EventJournal.RotationSlack, plus one record), unless
    // more than that was pending at once when it was rotated.
    internal long ReadWindow => MaxFileSize + JournalReader.MaxRecordBytes;
}
