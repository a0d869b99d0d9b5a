namespace VirtioPanic.Device;

// Something a WatchdogTimerQueue calls back once its due time has passed. It carries its own heap
// slot, so it is queued at most once and can be moved or removed in O(log n).
internal abstract class WatchdogTimerEntry
{
    // Both written and read only under the owning queue's lock: the slot in the heap (-1 when not
    // queued) and the TimeProvider timestamp the entry is due at.
    internal int QueueIndex = -1;
    internal long QueueDue;

    // Called once per time the entry comes due (it is no longer queued by then), with no queue lock
    // held, on the queue's thread (TimeProvider.System) or its ITimer's callback (any other provider).
    internal abstract void OnDue();
}
