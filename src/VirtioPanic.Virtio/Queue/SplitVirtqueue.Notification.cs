namespace VirtioPanic.Virtio.Queue;

// Notification suppression in both directions (virtio 1.2 §2.7.7 used-buffer notifications,
// §2.7.10 available-buffer notifications), with and without VIRTIO_F_EVENT_IDX.
internal sealed partial class SplitVirtqueue
{
    // Asks the driver to kick again when it adds buffers, then reports whether buffers arrived in
    // the meantime; the caller must process them (and call this again) before sleeping.
    internal bool EnableNotification()
    {
        if (_memory is null || _status != VirtqueueStatus.Ok)
        {
            return false;
        }

        // The store with a full fence after it (store avail_event/flags -> load avail.idx).
        // Without the fence the load can be satisfied before the store is visible: the driver
        // publishes a buffer, reads the old avail_event, skips the kick, and we read the old
        // avail.idx and go to sleep: a lost wakeup (§2.7.10, the mirror of §2.7.13 step 6 on the
        // driver side). One exchange is both (SplitRingView: the Exchange* forms).
        if (_eventIndex)
        {
            // §2.7.10: kick me once you write the entry numbered _nextAvail.
            _ring.ExchangeAvailEvent(_nextAvail);
        }
        else
        {
            _ring.ExchangeUsedFlags(0);
        }

        return _ring.LoadAvailIndex() != _nextAvail;
    }

    // FlushUsed, then EnableNotification, with one full fence where the two take one each: both
    // stores (used.idx with release, then avail_event or used.flags) come before the fence and both
    // loads (used_event or avail.flags, then avail.idx) after it, so each store -> load pair the
    // two fences ordered is still ordered (the used.idx store before the used_event load, the
    // re-arm before the avail.idx re-check). Returns EnableNotification's answer.
    internal bool EndRound(out bool notify)
    {
        // The round of a healthy EVENT_IDX queue (Ok implies activated), with the values in
        // locals; EndRoundGeneral decides every other case the same way.
        if (_status == VirtqueueStatus.Ok && _eventIndex)
        {
            // The re-arm is written in both branches so the flush decision is one branch, not a
            // flag kept across the exchange.
            ushort nextUsed = _nextUsed;
            ushort nextAvail = _nextAvail;
            if (nextUsed != _publishedUsed)
            {
                _ring.StoreUsedIndex(nextUsed);
                _publishedUsed = nextUsed;
                _ring.ExchangeAvailEvent(nextAvail);
                notify = DecideEventIndex(nextUsed);
            }
            else
            {
                _ring.ExchangeAvailEvent(nextAvail);
                notify = false;
            }

            return _ring.LoadAvailIndex() != nextAvail;
        }

        return EndRoundGeneral(out notify);
    }

    private bool EndRoundGeneral(out bool notify)
    {
        notify = false;
        if (_memory is null)
        {
            return false;
        }

        bool flush = _nextUsed != _publishedUsed;
        if (flush)
        {
            // Release: the used elements and the bytes written into the buffers become visible
            // no later than the new used.idx (§2.7.8.2).
            _ring.StoreUsedIndex(_nextUsed);
            _publishedUsed = _nextUsed;
        }

        // Full fence: see FlushUsed and EnableNotification for the two races it closes.
        // Re-arming, it is the re-arm store itself (an exchange: SplitRingView's Exchange* forms), which
        // also orders the used.idx store before it against the loads after it.
        bool arm = _status == VirtqueueStatus.Ok;
        if (arm)
        {
            if (_eventIndex)
            {
                _ring.ExchangeAvailEvent(_nextAvail);
            }
            else
            {
                _ring.ExchangeUsedFlags(0);
            }
        }
        else
        {
            Interlocked.MemoryBarrier();
        }

        if (flush)
        {
            notify = Decide();
        }

        return arm && _ring.LoadAvailIndex() != _nextAvail;
    }

    // Tells the driver kicks are not needed while we are polling. With EVENT_IDX used.flags must
    // stay 0 (§2.7.10.2); avail_event is simply left behind, so at worst we get spurious kicks.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal void DisableNotification()
    {
        if (_memory is null || _eventIndex)
        {
            return;
        }

        _ring.StoreUsedFlags(SplitRingLayout.UsedFlagNoNotify);
    }

    // The used-buffer notification decision; the caller has fenced after publishing used.idx.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private bool Decide()
    {
        if (!_eventIndex)
        {
            // §2.7.7.2 without EVENT_IDX: notify unless the driver set NO_INTERRUPT.
            return (_ring.LoadAvailFlags() & SplitRingLayout.AvailFlagNoInterrupt) == 0;
        }

        return DecideEventIndex(_publishedUsed);
    }

    // Decide with EVENT_IDX, newUsed being the used.idx just published.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private bool DecideEventIndex(ushort newUsed)
    {
        ushort oldUsed = _signalledUsed;
        bool valid = _signalledValid;
        _signalledUsed = newUsed;
        _signalledValid = true;

        // The first decision after activation has no meaningful "old" index: notify (QEMU's
        // signalled_used_valid). Afterwards §2.7.7.2: notify when used.idx crossed used_event.
        return !valid || SplitRingLayout.NeedsEvent(_ring.LoadUsedEvent(), newUsed, oldUsed);
    }
}
