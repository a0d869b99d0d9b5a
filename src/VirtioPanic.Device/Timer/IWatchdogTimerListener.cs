namespace VirtioPanic.Device.Timer;

// Receives WatchdogTimer transitions, outside its lock, on the thread that caused them.
internal interface IWatchdogTimerListener
{
    void OnTransition(in WatchdogTransition transition);

    // A pretimeout notice became pending for the guest (deliver it on noticeq).
    void OnNoticePending();

    // The timer's callback threw (caught by the timer queue); must not throw itself.
    void OnTimerFault(Exception exception);
}
