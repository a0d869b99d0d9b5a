namespace VirtioPanic.Hosting.Journal;

// The records that go to the file in one write (and at most one fsync). Every caller whose
// record is in it waits for it; it completes after the journal released its lock, with
// continuations run asynchronously, so no caller's code ever runs on the writer.
internal sealed class JournalBatch
{
    private readonly TaskCompletionSource<bool> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Synchronous waiters (vCPU threads journaling on acceptance) block on this rather than on the
    // task: Task.Wait spins first, and a hundred vCPU threads spinning on two busy cores slowed the
    // writer they were waiting for. Created by the first such waiter.
    private ManualResetEventSlim? _written;
    private int _completed;

    // Guarded by the journal's lock until the batch is taken for writing.
    internal bool FlushToDisk { get; set; }

    internal Task<bool> Completion => _completion.Task;

    internal void Complete(bool written)
    {
        _completion.TrySetResult(written);

        // Full fence: a waiter that published its event before this either sees _completed or is woken.
        Interlocked.Exchange(ref _completed, 1);
        Volatile.Read(ref _written)?.Set();
    }

    internal bool Wait()
    {
        if (Volatile.Read(ref _completed) == 0)
        {
            ManualResetEventSlim written = Volatile.Read(ref _written) ?? Publish();
            if (Volatile.Read(ref _completed) == 0)
            {
                written.Wait();
            }
        }

        return _completion.Task.Result;
    }

    private ManualResetEventSlim Publish()
    {
        var created = new ManualResetEventSlim(initialState: false, spinCount: 1);
        return Interlocked.CompareExchange(ref _written, created, null) ?? created;
    }
}
