namespace VirtioPanic.Device.Timer;

// A pretimeout notice waiting for a noticeq buffer; Countdown identifies the countdown it belongs
// to, Order when it fired among all notices (NoticeOrder).
internal readonly record struct PendingNotice(long Countdown, TimeSpan TimeLeft, TimeSpan Timeout, TimeSpan Pretimeout, long Order);
