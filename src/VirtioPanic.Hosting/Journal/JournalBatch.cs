namespace VirtioPanic.Hosting.Journal;

// The records that go to the file in one write (and at most one fsync). Every caller whose
// record is in it waits for Completion; it completes after the journal released its lock, with
// continuations run asynchronously, so no caller's code ever runs on the writer.
internal sealed class JournalBatch
{
    private readonly TaskCompletionSource<bool> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Guarded by the journal's lock until the batch is taken for writing.
    internal bool FlushToDisk { get; set; }

    internal Task<bool> Completion => _completion.Task;

    internal void Complete(bool written) => _completion.TrySetResult(written);
}
