namespace VirtioPanic.Device.Timer;

// Something a WatchdogTimerQueue calls back once its due time has passed. It carries its own heap
// slot, so it is queued at most once and can be moved or removed in O(log n).
internal abstract class WatchdogTimerEntry
{
    // Both written and read only under the owning queue's lock: the slot in the heap (-1 when not
    // queued) and the TimeProvider timestamp the entry is due at.
    internal int QueueIndex = -1;
    internal long QueueDue;

    // The owner's own idea of when it is next due, published without the queue's lock: written by
    // the owner (Volatile.Write, under its own lock), read by the firing thread under the queue's
    // lock (Volatile.Read). long.MaxValue means "no hint". The owner only ever raises it without
    // telling the queue (a keepalive); whenever it lowers it, it calls Schedule afterwards. So a
    // queued entry's QueueDue <= DueHint holds once Schedule has run, and a queue that sees
    // DueHint > QueueDue may move the entry later to DueHint without calling the owner.
    internal long DueHint = long.MaxValue;

    // Called once per time the entry comes due (it is no longer queued by then), with no queue lock
    // held, on the queue's thread (TimeProvider.System) or its ITimer's callback (any other provider).
    internal abstract void OnDue();

    // Called, on the same thread, when OnDue threw: the queue has caught the exception and goes on
    // firing the other entries. The entry is not queued any more; it may schedule itself again.
    internal virtual void OnFault(Exception exception)
    {
    }
}
