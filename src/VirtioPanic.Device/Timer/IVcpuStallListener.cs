namespace VirtioPanic.Device.Timer;

// Receives VcpuStallMonitor transitions, outside its lock, on the thread that caused them (a pet's
// thread for a recovery, the timer queue's thread for the stages).
internal interface IVcpuStallListener
{
    void OnTransition(in VcpuStallTransition transition);

    // A VCPU_STALL notice became pending (deliver it on noticeq).
    void OnNoticePending();

    // The monitor's check threw (caught by the timer queue); must not throw itself. Named as
    // IWatchdogTimerListener's, so the device's one listener serves both.
    void OnTimerFault(Exception exception);
}
