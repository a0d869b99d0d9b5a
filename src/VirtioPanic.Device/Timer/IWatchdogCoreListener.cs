namespace VirtioPanic.Device;

// Receives WatchdogCore transitions, outside its lock, on the thread that caused them.
internal interface IWatchdogCoreListener
{
    void OnTransition(in WatchdogTransition transition);

    // A pretimeout notice became pending for the guest (deliver it on noticeq).
    void OnNoticePending();

    // The core's timer callback threw (caught by the timer queue); must not throw itself.
    void OnTimerFault(Exception exception);
}
